package cases

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

func FuzzParseAssignments(f *testing.F) {
	f.Add([]byte(leasesCSV))
	f.Add([]byte(`{"ip":"192.0.2.20","port_first":1024,"port_last":2047,"start":"2026-01-01T00:00:00Z","subscriber_id":"c","email":"c@example.net"}` + "\n{"))
	f.Add([]byte("\"unterminated\n1,2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, stats, err := ParseAssignments(bytes.NewReader(b))
		if err != nil {
			return
		}
		if a.Len() != stats.Rows {
			t.Fatalf("%d leases, %d rows", a.Len(), stats.Rows)
		}
		for _, l := range a.leases {
			ip := netip.AddrFrom16(l.ip).Unmap()
			m := a.Lookup(ip, int(l.portFirst), time.Unix(l.start, 0))
			if m == nil {
				t.Fatalf("lease %+v not found by its own start", l)
			}
		}
	})
}

func FuzzParseStatic(f *testing.F) {
	f.Add([]byte("network,subscriber_id,email,name\n192.0.2.0/24,a,a@example.net,A\n::ffff:10.0.0.0/104,b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, stats, err := ParseStatic(bytes.NewReader(b))
		if err != nil {
			return
		}
		if st.Len() != stats.Rows {
			t.Fatalf("%d networks, %d rows", st.Len(), stats.Rows)
		}
		for p, want := range st.byPrefix {
			if got, ok := st.Lookup(p.Addr()); !ok || (p.Bits() == p.Addr().BitLen() && got != want) {
				t.Fatalf("%s: %+v %v, want %+v", p, got, ok, want)
			}
		}
	})
}
