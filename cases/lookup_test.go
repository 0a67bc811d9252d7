package cases

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestStaticLongestPrefixAndBadRows(t *testing.T) {
	in := `network,subscriber_id,email,name
192.0.2.0/24,biz-1,noc@biz.example,Biz Ltd
192.0.2.128/25,biz-2,ops@biz2.example,
# comment
not-a-net,x,y@z.example
192.0.2.7,one,one@example.net,One
2001:db8::/48,v6,v6@example.net
192.0.2.0/24,dup,dup@example.net
198.51.100.0/24,,nobody@example.net
`
	st, stats, err := ParseStatic(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if st.Len() != 4 || stats.Bad != 3 {
		t.Fatalf("rows %d bad %d errors %v", st.Len(), stats.Bad, stats.Errors)
	}
	lines := []int{}
	for _, e := range stats.Errors {
		lines = append(lines, e.Line)
	}
	if fmt.Sprint(lines) != "[5 8 9]" {
		t.Errorf("bad lines = %v (%v)", lines, stats.Errors)
	}
	for ip, want := range map[string]string{"192.0.2.1": "biz-1", "192.0.2.200": "biz-2", "192.0.2.7": "one", "2001:db8::1": "v6", "::ffff:192.0.2.7": "one"} {
		sub, ok := st.Lookup(netip.MustParseAddr(ip))
		if !ok || sub.ID != want {
			t.Errorf("%s -> %+v %v, want %s", ip, sub, ok, want)
		}
	}
	if _, ok := st.Lookup(netip.MustParseAddr("198.51.100.1")); ok {
		t.Error("unknown network found")
	}
}

const leasesCSV = `ip,port_first,port_last,start,end,subscriber_id,email
192.0.2.10,,,2026-01-01T00:00:00Z,2026-01-01T12:00:00Z,alice,alice@example.net
192.0.2.10,,,2026-01-01T12:00:00Z,,bob,bob@example.net
192.0.2.20,1024,2047,2026-01-01T00:00:00Z,2026-01-02T00:00:00Z,carol,carol@example.net
192.0.2.20,2048,3071,2026-01-01T00:00:00Z,2026-01-02T00:00:00Z,dave,dave@example.net
192.0.2.30,,,2026-01-01T00:00:00Z,2026-01-01T10:00:00Z,erin,erin@example.net
192.0.2.30,,,2026-01-01T06:00:00Z,2026-01-01T20:00:00Z,frank,frank@example.net
192.0.2.40,,,yesterday,,x,x@example.net
192.0.2.41,5,1,2026-01-01T00:00:00Z,,x,x@example.net
192.0.2.42,,,2026-01-02T00:00:00Z,2026-01-01T00:00:00Z,x,x@example.net
too,few
192.0.2.50,,,1767225600,1767312000,gina,gina@example.net
192.0.2.60,,,2026-01-01T00:00:00Z,,hank,hank@example.net
192.0.2.60,,,2026-01-01T00:00:00Z,2026-01-01T05:00:00Z,hank,hank@example.net
192.0.2.60,,,2026-01-01T08:00:00Z,,ivy,ivy@example.net
`

func TestAssignmentsTimePortsOverlapsAndBadRows(t *testing.T) {
	a, stats, err := ParseAssignments(strings.NewReader(leasesCSV))
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 10 || stats.Bad != 4 || stats.Overlaps != 1 {
		t.Fatalf("leases %d bad %d overlaps %d: %v", a.Len(), stats.Bad, stats.Overlaps, stats.Errors)
	}
	var lines []int
	for _, e := range stats.Errors {
		lines = append(lines, e.Line)
	}
	if fmt.Sprint(lines) != "[8 9 10 11]" {
		t.Errorf("bad lines %v: %v", lines, stats.Errors)
	}
	ip := netip.MustParseAddr
	cases := []struct {
		ip   string
		port int
		at   string
		want string // subscriber, "" = none, "?a,b" = ambiguous
	}{
		{"192.0.2.10", 0, "2026-01-01T11:59:59Z", "alice"},
		{"192.0.2.10", 0, "2026-01-01T12:00:00Z", "bob"},
		{"192.0.2.10", 0, "2027-06-01T00:00:00Z", "bob"}, // open lease
		{"192.0.2.10", 0, "2025-12-31T23:59:59Z", ""},
		{"192.0.2.20", 2000, "2026-01-01T05:00:00Z", "carol"},
		{"192.0.2.20", 2048, "2026-01-01T05:00:00Z", "dave"},
		{"192.0.2.20", 0, "2026-01-01T05:00:00Z", "?carol,dave"},
		{"192.0.2.20", 9999, "2026-01-01T05:00:00Z", "?carol,dave"},
		{"192.0.2.30", 0, "2026-01-01T08:00:00Z", "?erin,frank"},
		{"192.0.2.30", 0, "2026-01-01T11:00:00Z", "frank"},
		{"192.0.2.50", 0, "2026-01-01T01:00:00Z", "gina"},
		{"::ffff:192.0.2.50", 0, "2026-01-01T01:00:00Z", "gina"},
		{"192.0.2.99", 0, "2026-01-01T01:00:00Z", ""},
		// A session start whose Stop was logged as a closed lease, and
		// an open lease ended by the next holder.
		{"192.0.2.60", 0, "2026-01-01T06:00:00Z", "hank"},
		{"192.0.2.60", 0, "2026-01-01T09:00:00Z", "ivy"},
	}
	for _, c := range cases {
		m := a.Lookup(ip(c.ip), c.port, ts(c.at))
		got := ""
		switch {
		case m == nil:
		case m.Ambiguous:
			var ids []string
			for _, s := range m.Candidates {
				ids = append(ids, s.ID)
			}
			got = "?" + strings.Join(ids, ",")
			if m.Note == "" {
				t.Errorf("%+v: ambiguous without a note", c)
			}
		default:
			got = m.ID
		}
		if got != c.want {
			t.Errorf("%s:%d at %s = %q, want %q", c.ip, c.port, c.at, got, c.want)
		}
	}
}

func TestAssignmentsJSONLines(t *testing.T) {
	in := `{"ip":"192.0.2.20","port_first":1024,"port_last":2047,"start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z","subscriber_id":"carol","email":"carol@example.net"}
{"ip":"192.0.2.20","port_first":"2048","port_last":"3071","start":"2026-01-01T00:00:00Z","subscriber_id":"dave","email":"dave@example.net"}
{"ip":"192.0.2.21"
{"ip":"192.0.2.22","start":"2026-01-01T00:00:00Z","subscriber_id":"x","email":"not an address"}
`
	a, stats, err := ParseAssignments(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 2 || stats.Bad != 2 || stats.Errors[0].Line != 3 || stats.Errors[1].Line != 4 {
		t.Fatalf("leases %d stats %+v", a.Len(), stats)
	}
	if m := a.Lookup(netip.MustParseAddr("192.0.2.20"), 3000, ts("2026-03-01T00:00:00Z")); !m.Found() || m.ID != "dave" {
		t.Errorf("open CGNAT block = %+v", m)
	}
}

func TestDirectoryReloadsChangedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "leases.csv")
	os.WriteFile(p, []byte("192.0.2.10,,,2026-01-01T00:00:00Z,,alice,alice@example.net\n"), 0o600)
	d, err := NewDirectory("", p, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := ts("2026-01-02T00:00:00Z")
	if m, _ := d.Find(context.Background(), netip.MustParseAddr("192.0.2.10"), 0, at); !m.Found() || m.ID != "alice" {
		t.Fatalf("before = %+v", m)
	}
	os.WriteFile(p, []byte("192.0.2.10,,,2026-01-01T00:00:00Z,,bob,bob@example.net\nbroken\n"), 0o600)
	// A rewrite within the same second keeps the mtime on some file
	// systems; the size differs here, and that is checked too.
	r, err := d.Refresh()
	if err != nil || len(r) != 1 || r[0].Stats.Bad != 1 || r[0].Stats.Errors[0].Line != 2 {
		t.Fatalf("refresh = %+v, %v", r, err)
	}
	if m, _ := d.Find(context.Background(), netip.MustParseAddr("192.0.2.10"), 0, at); !m.Found() || m.ID != "bob" {
		t.Fatalf("after = %+v", m)
	}
	if r, _ := d.Refresh(); len(r) != 0 {
		t.Errorf("unchanged file read again: %+v", r)
	}
}

func TestHTTPLookupCachesAndTimesOut(t *testing.T) {
	var calls atomic.Int32
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		q := r.URL.Query()
		switch q.Get("ip") {
		case "192.0.2.1":
			if q.Get("port") != "4000" || q.Get("time") != "2026-01-01T10:00:00Z" {
				http.Error(w, "bad query "+r.URL.RawQuery, 400)
				return
			}
			json.NewEncoder(w).Encode(map[string]string{"subscriber_id": "s1", "email": "s1@example.net"})
		case "192.0.2.2":
			<-hang
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(hang)
	h, err := NewHTTPLookup(srv.URL+"/who", 200*time.Millisecond, time.Minute, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := ts("2026-01-01T10:00:00Z")
	for range 3 {
		m, err := h.Find(ctx, netip.MustParseAddr("192.0.2.1"), 4000, at)
		if err != nil || !m.Found() || m.ID != "s1" || m.Source != SourceLookup {
			t.Fatalf("find = %+v, %v", m, err)
		}
	}
	if m, err := h.Find(ctx, netip.MustParseAddr("192.0.2.9"), 0, at); m != nil || err != nil {
		t.Errorf("404 = %+v, %v", m, err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2 (cached)", n)
	}
	if _, err := h.Find(ctx, netip.MustParseAddr("192.0.2.2"), 0, at); err == nil {
		t.Error("a hanging lookup returned no error")
	}
}
