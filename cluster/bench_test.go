package cluster_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/store"
)

// BenchmarkCommit publishes 2 KB records through the three nodes of an
// in-process cluster from 32 goroutines and reports the latency of the
// acknowledgement (p50, p99) besides ns/op (the inverse of throughput).
// The figures are for docs/cluster.md; nothing asserts on them.
func BenchmarkCommit(b *testing.B) {
	for _, policy := range []string{"always", "default"} {
		b.Run("sync="+policy, func(b *testing.B) { benchCommit(b, policy) })
	}
}

func benchCommit(b *testing.B, policy string) {
	c := clustertest.StartSync(b, 3, 3, policy)
	c.WaitHealthy(60 * time.Second)
	body := string(make([]byte, 2048))
	var mu sync.Mutex
	var lat []time.Duration
	var next atomic.Int64
	b.SetParallelism(16) // x GOMAXPROCS (2 here): 32 concurrent clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := next.Add(1)
			m := c.Members[i%3]
			e := entry(b, body)
			start := time.Now()
			if _, err := m.Node.Commit([]store.Entry{e}); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkCatchUp measures how long a node that was down takes to apply
// b.N records published while it was away.
func BenchmarkCatchUp(b *testing.B) {
	c := clustertest.Start(b, 3, 3)
	c.WaitHealthy(60 * time.Second)
	late := c.Members[2]
	c.Stop(late)
	body := string(make([]byte, 2048))
	var wg sync.WaitGroup
	ids := make([]store.ID, b.N)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < b.N; i += 32 {
				e := entry(b, body)
				ids[i] = e.Message.ID
				for {
					if _, err := c.Members[i%2].Node.Commit([]store.Entry{e}); err == nil {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	start := time.Now()
	c.Restart(late)
	clustertest.Eventually(b, 30*time.Minute, "catch-up", func() string {
		held, err := late.Store.Held(ids)
		if err != nil {
			return err.Error()
		}
		if n := len(held) - countTrue(held); n > 0 {
			return fmt.Sprint(n, " missing")
		}
		return ""
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// BenchmarkPutSingle is BenchmarkCommit's baseline: the same records and
// concurrency into one node's store, as a node without cluster commits.
func BenchmarkPutSingle(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	body := string(make([]byte, 2048))
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			e := entry(b, body)
			start := time.Now()
			if err := st.Put([]store.Entry{e}); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
