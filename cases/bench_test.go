package cases

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// millionLeases is a DHCP/CGNAT-like log: 250 000 addresses, each with
// four consecutive six-hour leases to different subscribers, a quarter
// of them as CGNAT port blocks.
func millionLeases(b *testing.B) []byte {
	var buf bytes.Buffer
	base := ts("2026-01-01T00:00:00Z").Unix()
	for i := range 250000 {
		ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		for k := range 4 {
			st, en := base+int64(k)*6*3600, base+int64(k+1)*6*3600
			if i%4 == 0 {
				fmt.Fprintf(&buf, "%s,%d,%d,%d,%d,s%d-%d,s%d@example.net\n", ip, 1024+k*1024, 2047+k*1024, base, base+24*3600, i, k, i)
				continue
			}
			fmt.Fprintf(&buf, "%s,,,%d,%d,s%d-%d,s%d@example.net\n", ip, st, en, i, k, i)
		}
	}
	return buf.Bytes()
}

// BenchmarkAssignmentsLoad1M reports the load time of a million rows
// (ns/op) and the heap the index keeps (index-MB).
func BenchmarkAssignmentsLoad1M(b *testing.B) {
	data := millionLeases(b)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		a, stats, err := ParseAssignments(bytes.NewReader(data))
		if err != nil || stats.Rows != 1000000 || stats.Bad != 0 {
			b.Fatal(err, stats.Rows, stats.Bad)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), "index-MB")
		runtime.KeepAlive(a)
	}
}

// BenchmarkAssignmentsLoadFile1M loads from a file, as the daemon does
// (the file's size sizes the index up front).
func BenchmarkAssignmentsLoadFile1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "leases.csv")
	if err := os.WriteFile(path, millionLeases(b), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		a, stats, err := ParseAssignments(f)
		f.Close()
		if err != nil || stats.Rows != 1000000 || a.Len() != 1000000 {
			b.Fatal(err, stats.Rows)
		}
	}
}

// BenchmarkAssignmentsLookup1M: one lookup per op in a million leases.
func BenchmarkAssignmentsLookup1M(b *testing.B) {
	a, _, err := ParseAssignments(bytes.NewReader(millionLeases(b)))
	if err != nil {
		b.Fatal(err)
	}
	base := ts("2026-01-01T00:00:00Z")
	b.ResetTimer()
	found := 0
	for i := range b.N {
		n := i * 7919 % 250000
		ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
		at := base.Add(time.Duration(i%24) * time.Hour)
		if m := a.Lookup(ip, 1024+(i%4)*1024, at); m.Found() {
			found++
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	if found != b.N {
		b.Fatalf("%d of %d found", found, b.N)
	}
}
