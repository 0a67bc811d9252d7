package intel

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xarfd/xarfd/store"
)

// benchListed is how many IPv4 addresses the load benchmarks list.
const benchListed = 10000

// listMany records one trap hit for each of n addresses.
func listMany(tb testing.TB, r *rig, s *Service, n int) {
	tb.Helper()
	now := time.Now()
	for i := 0; i < n; i += 1000 {
		var ups []store.IntelUpdate
		for j := i; j < i+1000 && j < n; j++ {
			id, _ := store.NewID()
			a := netip.AddrFrom4([4]byte{45, byte(j >> 16), byte(j >> 8), byte(j)})
			ups = append(ups, store.IntelUpdate{Report: id, Found: []store.IntelFound{{Kind: "ip", Value: a.String(),
				Hit: store.IntelHit{Report: id, Channel: "trap", Time: now, Source: SourceSpamtrap, Where: "origin"}}}})
		}
		changed, err := r.st.IntelRecord(ups)
		if err != nil {
			tb.Fatal(err)
		}
		s.apply(changed)
	}
}

// benchQueries: half listed, half not, as a mail server sees them.
func benchName(i int) string {
	j := i % (2 * benchListed)
	return fmt.Sprintf("%d.%d.%d.45.bl.abuse-desk.net.", byte(j), byte(j>>8), byte(j>>16))
}

// runLoad sends b.N A queries over UDP from parallel clients, each on
// its own socket, and reports queries per second.
func runLoad(b *testing.B, addr string) {
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		conn, err := c.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		m := new(dns.Msg)
		for pb.Next() {
			i := int(n.Add(1))
			m.SetQuestion(benchName(i), dns.TypeA)
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil {
				b.Error(err)
				return
			}
			if listed := len(r.Answer) == 1; listed != (i%(2*benchListed) < benchListed) {
				b.Errorf("%s: %v", benchName(i), r)
				return
			}
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "queries/s")
}

// BenchmarkDNSLoad compares our server with Debian's rbldnsd serving
// the same exported data; run both in one process so that they share
// the machine's state (go test -run X -bench DNSLoad -count 5).
func BenchmarkDNSLoad(b *testing.B) {
	r := newRig(b)
	s := r.service(b)
	listMany(b, r, s, benchListed)
	b.Run("xarfd", func(b *testing.B) {
		addr, _ := startDNSTB(b, s)
		runLoad(b, addr)
	})
	b.Run("rbldnsd", func(b *testing.B) {
		dir := b.TempDir()
		if err := s.Export(dir); err != nil {
			b.Fatal(err)
		}
		runLoad(b, startRbldnsd(b, dir, s))
	})
}
