// Package clustertest runs xarfd cluster nodes, each with its embedded
// NATS server and its own store, in one test process on 127.0.0.1 with
// random ports, routed to each other.
package clustertest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xarfd/xarfd/cluster"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// FreePorts returns n TCP ports on 127.0.0.1 that were free a moment
// ago. Routes must name their peers before these listen, so the ports
// cannot be the kernel's choice at listen time.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i], ports[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// YAML is the cluster block of node name, whose embedded server listens
// for routes on clusterPort and routes to every port of all (its own
// included: NATS ignores a route to itself, so every node can share
// one list). Indented for the top level.
func YAML(name string, clusterPort int, all []int, replicas int, storeDir string) string {
	routes := make([]string, len(all))
	for i, p := range all {
		routes[i] = fmt.Sprintf(`"nats://127.0.0.1:%d"`, p)
	}
	return fmt.Sprintf(`cluster:
  node: %s
  replicas: %d
  publish_timeout: 3s
  nats:
    embedded:
      cluster_listen: "127.0.0.1:%d"
      routes: [%s]
      store_dir: %q
`, name, replicas, clusterPort, strings.Join(routes, ", "), storeDir)
}

// Base is a configuration without cluster block: two channels, fbl
// (arf, reports) and trap (redacting).
const Base = `hostname: mx.example.net
sender: {org: Example, contact: abuse@example.net, domain: example.net}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@example.net"]}
  - {name: trap, kind: trap, addresses: ["*@trap.example.net"], redact: {recipients: true}}
`

// Member is one running node.
type Member struct {
	Name  string
	Dir   string
	Cfg   *config.Config
	Store *store.Store
	Node  *cluster.Node
	// Registry holds the node's metrics (new at each Restart).
	Registry *prometheus.Registry

	mu      sync.Mutex
	applied map[store.ID]int // reports given to OnApply, by id
}

// Applied returns how often OnApply saw report id on this node.
func (m *Member) Applied(id store.ID) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied[id]
}

// Cluster is a set of members.
type Cluster struct {
	t        testing.TB
	Members  []*Member
	ports    []int // the members' cluster ports, in order
	replicas int
	sync     string
	// maxPayload replaces the embedded servers' max_payload (0: keep).
	maxPayload int32
	// ops builds a member's applier of operators' actions on its
	// store, at each (re)start; nil applies none.
	ops func(*Member) ops.Applier
	// base is the configuration without its cluster block and data_dir.
	base string
}

// Start starts n nodes with replicas replicas; they are stopped when
// the test ends.
func Start(t testing.TB, n, replicas int) *Cluster {
	t.Helper()
	return StartSync(t, n, replicas, config.SyncAlways)
}

// StartSync is Start with cluster.sync set to sync.
func StartSync(t testing.TB, n, replicas int, sync string) *Cluster {
	t.Helper()
	return start(t, &Cluster{t: t, ports: FreePorts(t, n), replicas: replicas, sync: sync, base: Base})
}

// StartMaxPayload is Start with the embedded servers' max_payload set to
// maxPayload: a record near the limit without a test of 64 MiB records.
func StartMaxPayload(t testing.TB, n, replicas int, maxPayload int32) *Cluster {
	t.Helper()
	return start(t, &Cluster{t: t, ports: FreePorts(t, n), replicas: replicas, sync: config.SyncAlways, maxPayload: maxPayload, base: Base})
}

// StartOps is Start with each member applying operators' actions with
// the applier build makes for it (called after its store opened, before
// its node starts, at every restart).
func StartOps(t testing.TB, n, replicas int, build func(*Member) ops.Applier) *Cluster {
	t.Helper()
	return StartOpsWith(t, n, replicas, Base, build)
}

// StartOpsWith is StartOps with base (as Base: no cluster block, no
// data_dir) as every member's configuration.
func StartOpsWith(t testing.TB, n, replicas int, base string, build func(*Member) ops.Applier) *Cluster {
	t.Helper()
	return start(t, &Cluster{t: t, ports: FreePorts(t, n), replicas: replicas, sync: config.SyncAlways, ops: build, base: base})
}

func start(t testing.TB, c *Cluster) *Cluster {
	t.Helper()
	n := len(c.ports)
	for i := range n {
		c.Members = append(c.Members, c.member(i, c.ports))
	}
	// All at once: each embedded server waits for its listeners only,
	// the JetStream cluster forms in the background.
	for _, m := range c.Members {
		c.Restart(m)
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			c.Stop(m)
		}
	})
	return c
}

func (c *Cluster) member(i int, routes []int) *Member {
	c.t.Helper()
	dir := c.t.TempDir()
	name := fmt.Sprintf("n%d", i+1)
	block := strings.Replace(YAML(name, c.ports[i], routes, c.replicas, filepath.Join(dir, "nats")), "\n  replicas:", "\n  sync: "+c.sync+"\n  replicas:", 1)
	cfg, err := config.Parse([]byte(c.base+"data_dir: "+dir+"\n"+block), name+".yaml")
	if err != nil {
		c.t.Fatal(err)
	}
	return &Member{Name: name, Dir: dir, Cfg: cfg, applied: map[store.ID]int{}}
}

// Add starts a new, empty member that routes to all the others (they
// learn of it from its routes): a node added to a running cluster.
func (c *Cluster) Add() *Member {
	c.t.Helper()
	c.ports = append(c.ports, FreePorts(c.t, 1)[0])
	m := c.member(len(c.ports)-1, c.ports)
	c.Members = append(c.Members, m)
	c.Restart(m)
	return m
}

// Stop closes m's node and store (a clean stop; its data stays).
func (c *Cluster) Stop(m *Member) {
	if m.Node != nil {
		m.Node.Close()
		m.Node = nil
	}
	if m.Store != nil {
		m.Store.Close()
		m.Store = nil
	}
}

// Restart opens m's store and starts its node again, on the same ports
// and directories.
func (c *Cluster) Restart(m *Member) {
	c.t.Helper()
	st, err := store.Open(m.Dir, store.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	m.Store = st
	var apply ops.Applier
	if c.ops != nil {
		apply = c.ops(m)
	}
	reg := prometheus.NewRegistry()
	node, err := cluster.Start(m.Cfg, &config.Resources{}, st, cluster.Options{
		Metrics:    cluster.NewMetrics(reg),
		MaxPayload: c.maxPayload,
		ApplyOp:    apply,
		OnApply: func(r *store.Report) {
			m.mu.Lock()
			m.applied[r.ID]++
			m.mu.Unlock()
		},
	})
	if err != nil {
		st.Close()
		m.Store = nil
		c.t.Fatal(err)
	}
	m.Node, m.Registry = node, reg
}

// WaitHealthy waits until every running member reports a healthy cluster.
func (c *Cluster) WaitHealthy(d time.Duration) {
	c.t.Helper()
	Eventually(c.t, d, "cluster healthy", func() string {
		for _, m := range c.Members {
			if m.Node == nil {
				continue
			}
			if h := m.Node.Health(); !h.OK {
				return m.Name + ": " + h.Reason
			}
		}
		return ""
	})
}

// Eventually polls cond until it returns "" or d has passed, then fails
// the test with what cond said last.
func Eventually(t testing.TB, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
