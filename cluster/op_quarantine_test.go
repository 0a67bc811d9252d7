package cluster_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// announced counts the reports each node announced, by id.
type announced struct {
	mu sync.Mutex
	n  map[string]map[store.ID]int
}

func (a *announced) count(node string, id store.ID) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[node][id]
}

// quarantine accepts a message that is no feedback report into channel
// fbl (arf) on m: it is quarantined on every node.
func quarantine(t *testing.T, in *ingest.Ingester, cfg *config.Config, subject string) store.ID {
	t.Helper()
	raw := []byte("From: someone@isp.example\r\nTo: fbl@example.net\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@isp.example>\r\n\r\nnot a feedback report\r\n")
	res, err := in.Accept(store.Envelope{PeerIP: netip.MustParseAddr("192.0.2.1"), MailFrom: "someone@isp.example", Via: "smtp"},
		[]ingest.Delivery{{Channel: cfg.Channel("fbl"), Rcpts: []string{"fbl@example.net"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Quarantined {
		t.Fatalf("%s not quarantined: %+v", subject, res[0])
	}
	return res[0].ID
}

func quarantinedOn(m *clustertest.Member, id store.ID) error {
	_, _, _, err := m.Store.Quarantined(id)
	return err
}

// A delete on one node and a reprocess on another hold on every node; a
// reprocess stores the outcome the asked node made on every node, even
// where that node's own configuration would convert differently (here
// the asked node's channel fbl is a trap, the others' an arf channel
// that quarantines the message again). Without a quorum, a delete is
// refused and the message stays.
func TestQuarantineActionsEveryNode(t *testing.T) {
	ann := &announced{n: map[string]map[store.ID]int{}}
	c := clustertest.StartOps(t, 3, 3, func(m *clustertest.Member) ops.Applier {
		return ingest.ApplyOp(m.Store, func(r *store.Report) {
			ann.mu.Lock()
			defer ann.mu.Unlock()
			if ann.n[m.Name] == nil {
				ann.n[m.Name] = map[store.ID]int{}
			}
			ann.n[m.Name][r.ID]++
		})
	})
	c.WaitHealthy(60 * time.Second)
	a, b, cc := c.Members[0], c.Members[1], c.Members[2]
	ingester := func(m *clustertest.Member, cfg *config.Config) *ingest.Ingester {
		in, err := ingest.New(cfg, m.Store, ingest.Options{Replicator: m.Node})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	inA := ingester(a, a.Cfg)
	gone, redo, kept := quarantine(t, inA, a.Cfg, "q-delete"), quarantine(t, inA, a.Cfg, "q-reprocess"), quarantine(t, inA, a.Cfg, "q-kept")
	for _, m := range c.Members {
		for _, id := range []store.ID{gone, redo, kept} {
			clustertest.Eventually(t, 60*time.Second, "quarantined on "+m.Name, func() string {
				if err := quarantinedOn(m, id); err != nil {
					return err.Error()
				}
				return ""
			})
		}
	}

	if err := ingester(b, b.Cfg).DeleteQuarantined(gone); err != nil {
		t.Fatal(err)
	}
	if err := quarantinedOn(b, gone); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the asked node still has the deleted message: %v", err)
	}

	trapCfg, err := config.Parse([]byte(strings.Replace(clustertest.Base, "{name: fbl, kind: arf,", "{name: fbl, kind: trap,", 1)+"data_dir: "+cc.Dir+"\n"), "trap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ingester(cc, trapCfg).Reprocess(redo)
	if err != nil || !res.Report {
		t.Fatalf("reprocess on %s: %+v %v", cc.Name, res, err)
	}
	want, err := cc.Store.GetReport(redo)
	if err != nil {
		t.Fatalf("the asked node has no report after its reprocess: %v", err)
	}
	for _, m := range c.Members {
		clustertest.Eventually(t, 60*time.Second, "actions on "+m.Name, func() string {
			if err := quarantinedOn(m, gone); !errors.Is(err, store.ErrNotFound) {
				return fmt.Sprintf("deleted message: %v", err)
			}
			got, err := m.Store.GetReport(redo)
			if err != nil {
				return fmt.Sprintf("reprocessed message's report: %v", err)
			}
			if !bytes.Equal(got.XARF, want.XARF) {
				return "its report differs from the asked node's"
			}
			// The announcement follows the commit: wait for it too.
			if ann.count(m.Name, redo) == 0 {
				return "the reprocessed report not announced yet"
			}
			return ""
		})
		if err := quarantinedOn(m, redo); !errors.Is(err, store.ErrNotQuarantined) {
			t.Errorf("%s: the reprocessed message is still quarantined: %v", m.Name, err)
		}
		if _, err := m.Store.GetOutbox(redo); err != nil {
			t.Errorf("%s: no outbox entry for the reprocessed report: %v", m.Name, err)
		}
		if n := ann.count(m.Name, redo); n != 1 {
			t.Errorf("%s announced the reprocessed report %d times, want once", m.Name, n)
		}
	}

	c.Stop(b)
	c.Stop(cc)
	err = inA.DeleteQuarantined(kept)
	if !errors.Is(err, store.ErrCommit) {
		t.Fatalf("delete without quorum: %v, want an error wrapping store.ErrCommit", err)
	}
	if err := quarantinedOn(a, kept); err != nil {
		t.Errorf("a delete refused for want of quorum removed the message: %v", err)
	}
}
