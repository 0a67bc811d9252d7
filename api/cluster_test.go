package api

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xarfd/xarfd/internal/lograte"
)

func TestHealthzReportsTheCluster(t *testing.T) {
	var st atomic.Pointer[ClusterStatus]
	st.Store(&ClusterStatus{Node: "mx1", OK: true, StreamLeader: "mx2", ConsumerLag: 7, ConfigMismatch: []string{"mx3"}})
	e := newEnv(t, false, func(o *Options) { o.Cluster = func() ClusterStatus { return *st.Load() } })

	r := e.get("/healthz", "")
	var h healthBody
	r.json(t, &h)
	if r.code != 200 || h.Cluster == nil || h.Cluster.Node != "mx1" || h.Cluster.StreamLeader != "mx2" || h.Cluster.ConsumerLag != 7 ||
		len(h.Cluster.ConfigMismatch) != 1 || h.Cluster.ConfigMismatch[0] != "mx3" {
		t.Errorf("healthy cluster: %d %s", r.code, r.body)
	}

	st.Store(&ClusterStatus{Node: "mx1", Reason: "no stream leader", ConsumerLag: 9})
	r = e.get("/healthz", "")
	h = healthBody{}
	r.json(t, &h)
	if r.code != 503 || h.Status != "unavailable" || h.Reason != "cluster: no stream leader" || h.Cluster == nil || h.Cluster.ConsumerLag != 9 {
		t.Errorf("cluster without leader: %d %s", r.code, r.body)
	}
}

func TestHealthzWithoutClusterSaysNothingOfIt(t *testing.T) {
	e := newEnv(t, false, nil)
	r := e.get("/healthz", "")
	var h healthBody
	r.json(t, &h)
	if r.code != 200 || h.Cluster != nil {
		t.Errorf("single node: %d %s", r.code, r.body)
	}
}

// A monitor polling a node that cannot accept gets 503 every time, but
// the log says so once a minute per reason, with the count.
func TestUnhealthyLoggedOncePerMinute(t *testing.T) {
	var st atomic.Pointer[ClusterStatus]
	st.Store(&ClusterStatus{Node: "mx1", Reason: "no stream leader"})
	e := newEnv(t, false, func(o *Options) { o.Cluster = func() ClusterStatus { return *st.Load() } })
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.srv.unhealthy = lograte.New(lograte.Every, func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	})
	lines := func() []string {
		var out []string
		for l := range strings.Lines(e.log.String()) {
			if strings.Contains(l, "not healthy") {
				out = append(out, l)
			}
		}
		return out
	}
	for range 20 {
		if r := e.get("/healthz", ""); r.code != 503 {
			t.Fatalf("healthz without leader: %d", r.code)
		}
	}
	if got := lines(); len(got) != 1 {
		t.Fatalf("20 polls made %d lines, want 1:\n%s", len(got), strings.Join(got, ""))
	}
	st.Store(&ClusterStatus{Node: "mx1", Reason: "not connected to NATS"})
	e.get("/healthz", "")
	if got := lines(); len(got) != 2 {
		t.Fatalf("a new reason is logged at once: %d lines:\n%s", len(got), strings.Join(got, ""))
	}
	mu.Lock()
	now = now.Add(lograte.Every)
	mu.Unlock()
	st.Store(&ClusterStatus{Node: "mx1", Reason: "no stream leader"})
	e.get("/healthz", "")
	if got := lines(); len(got) != 3 || !strings.Contains(got[2], `"repeated":19`) {
		t.Fatalf("after a minute: want a third line with the count 19:\n%s", strings.Join(got, ""))
	}
}
