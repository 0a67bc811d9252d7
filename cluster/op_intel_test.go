package cluster_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// opServices are the services of each member that apply actions.
type opServices struct {
	mu    sync.Mutex
	intel map[string]*intel.Service
}

func (s *opServices) intelOf(m *clustertest.Member) *intel.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.intel[m.Name]
}

// startOpCluster starts three nodes whose intel services apply
// delistings from the stream and publish their own.
func startOpCluster(t *testing.T) (*clustertest.Cluster, *opServices) {
	t.Helper()
	svcs := &opServices{intel: map[string]*intel.Service{}}
	c := clustertest.StartOps(t, 3, 3, func(m *clustertest.Member) ops.Applier {
		// clustertest.Base's trap channel stores only; mining it needs
		// no zone (those are the DNS server's).
		if ch := m.Cfg.Channel("trap"); !ch.Has(config.UseIntel) {
			ch.Uses = append(ch.Uses, config.UseIntel)
		}
		in, err := intel.New(m.Cfg, m.Store, intel.Options{})
		if err != nil {
			t.Fatal(err)
		}
		svcs.mu.Lock()
		svcs.intel[m.Name] = in
		svcs.mu.Unlock()
		return ops.Mux{ops.Delist: in.ApplyOp}.Apply
	})
	for _, m := range c.Members {
		svcs.intelOf(m).SetReplicator(m.Node)
	}
	c.WaitHealthy(60 * time.Second)
	return c, svcs
}

// trapHit accepts a trap message from source on m (through the stream).
func trapHit(t *testing.T, m *clustertest.Member, source string) store.ID {
	t.Helper()
	in, err := ingest.New(m.Cfg, m.Store, ingest.Options{Replicator: m.Node})
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("From: a@origin.example\r\nTo: x@trap.example.net\r\nSubject: s\r\n\r\nspam\r\n")
	env := store.Envelope{PeerIP: netip.MustParseAddr(source), PeerPort: 25, MailFrom: "s@origin.example", Via: "smtp"}
	res, err := in.Accept(env, []ingest.Delivery{{Channel: m.Cfg.Channel("trap"), Rcpts: []string{"x@trap.example.net"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	return res[0].ID
}

// A delisting on one node holds on every node: each node's lists (the
// DNS zones answer from them) stop listing the address, with the same
// time, reason and operator.
func TestDelistEveryNode(t *testing.T) {
	c, svcs := startOpCluster(t)
	const ip = "45.142.120.11"
	trapHit(t, c.Members[0], ip)
	for _, m := range c.Members {
		in := svcs.intelOf(m)
		clustertest.Eventually(t, 60*time.Second, "listed on "+m.Name, func() string {
			if _, err := in.Mine(); err != nil {
				return err.Error()
			}
			if _, ok := in.Lookup(intel.KindIP, ip); !ok {
				return "not listed"
			}
			return ""
		})
	}

	b := c.Members[1]
	ind, err := svcs.intelOf(b).Delist(intel.KindIP, ip, "customer cleaned the host", "ops")
	if err != nil {
		t.Fatal(err)
	}
	if ind.Delisted == nil || ind.Delisted.Reason != "customer cleaned the host" {
		t.Fatalf("the asked node's indicator after Delist: %+v", ind.Delisted)
	}
	if _, ok := svcs.intelOf(b).Lookup(intel.KindIP, ip); ok {
		t.Fatal("still listed on the asked node when Delist returned")
	}
	for _, m := range c.Members {
		in := svcs.intelOf(m)
		clustertest.Eventually(t, 60*time.Second, "delisted on "+m.Name, func() string {
			if _, ok := in.Lookup(intel.KindIP, ip); ok {
				return "listed"
			}
			got, _, err := in.Get(intel.KindIP, ip)
			if err != nil {
				return err.Error()
			}
			if d := got.Delisted; d == nil || *d != *ind.Delisted {
				return fmt.Sprintf("delisted %+v, want %+v", d, ind.Delisted)
			}
			return ""
		})
	}
}

// A node whose worker has not mined the reports of an indicator yet
// when the delisting comes mines them first: it is delisted there too,
// and stays so when the worker comes to those reports.
func TestDelistBeforeMined(t *testing.T) {
	c, svcs := startOpCluster(t)
	const ip = "45.142.120.12"
	a, b := c.Members[0], c.Members[1]
	trapHit(t, a, ip)
	clustertest.Eventually(t, 60*time.Second, "listed on "+a.Name, func() string {
		svcs.intelOf(a).Mine()
		if _, ok := svcs.intelOf(a).Lookup(intel.KindIP, ip); !ok {
			return "not listed"
		}
		return ""
	})
	// b and c never mined (no worker runs in this test).
	if _, err := svcs.intelOf(a).Delist(intel.KindIP, ip, "false positive", "ops"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*clustertest.Member{b, c.Members[2]} {
		in := svcs.intelOf(m)
		clustertest.Eventually(t, 60*time.Second, "delisted on "+m.Name, func() string {
			got, _, err := in.Get(intel.KindIP, ip)
			if err != nil {
				return err.Error()
			}
			if got.Delisted == nil {
				return "not delisted"
			}
			return ""
		})
		if _, err := in.Mine(); err != nil {
			t.Fatal(err)
		}
		if _, ok := in.Lookup(intel.KindIP, ip); ok {
			t.Errorf("%s lists the address after the delisting", m.Name)
		}
	}
}
