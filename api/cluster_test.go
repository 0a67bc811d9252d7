package api

import (
	"sync/atomic"
	"testing"
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
