package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// retryNodeConfig is claimNodeConfig with a cluster block: node name
// on the NATS server at url.
func retryNodeConfig(t *testing.T, hostname, smarthost, name, url string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
hostname: %s
sender: {org: Test Net, contact: abuse@reporter.test, domain: reporter.test}
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@origin.test}]
reporter:
  enabled: true
  from: reports@reporter.test
  smarthost: {address: %q, tls: none}
  retry: {first: 100ms, give_up_after: 1h}
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.reporter.test"]
    redact: {recipients: true}
data_dir: %s
cluster:
  node: %s
  replicas: 1
  publish_timeout: 5s
  nats: {url: %q}
`, hostname, smarthost, t.TempDir(), name, url)), hostname+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// retryNode is a node whose reporter applies retries from the stream.
type retryNode struct {
	node *Node
	rep  *reporter.Reporter
	st   *store.Store
}

func startRetryNode(t *testing.T, cfg *config.Config, st *store.Store, claims *Claims) *retryNode {
	t.Helper()
	var rep atomic.Pointer[reporter.Reporter]
	node, err := Start(cfg, &config.Resources{}, st, Options{
		Logger:  zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		ApplyOp: ops.Mux{ops.Retry: func(ctx context.Context, op *ops.Op) error { return rep.Load().ApplyOp(ctx, op) }}.Apply,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	r, err := reporter.New(cfg, st, reporter.Options{Claims: claims, Poll: 20 * time.Millisecond, Lease: 3 * time.Second,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Str("node", cfg.Cluster.Node).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	r.SetReplicator(node)
	rep.Store(r)
	return &retryNode{node: node, rep: r, st: st}
}

// An operator cancels a report on one node (no node sends it), then
// retries it there: every node requeues it at the same time, and it is
// sent once cluster-wide.
func TestRetryEveryNodeSentOnce(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	cfgA := retryNodeConfig(t, "mx1.reporter.test", mp.smtp, "mx1", s.ClientURL())
	cfgB := retryNodeConfig(t, "mx2.reporter.test", mp.smtp, "mx2", s.ClientURL())
	stA, stB, ids := claimTwoStores(t, cfgA, 2)
	claimsA, _ := claimNode(t, s, "mx1", metrics.New())
	claimsB, _ := claimNode(t, s, "mx2", metrics.New())
	a := startRetryNode(t, cfgA, stA, claimsA)
	b := startRetryNode(t, cfgB, stB, claimsB)
	claimWaitFor(t, "nodes ready", func() (bool, string) {
		ha, hb := a.node.Health(), b.node.Health()
		return ha.OK && hb.OK, ha.Reason + " / " + hb.Reason
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := a.rep.Cancel(ctx, ids[0], time.Now().UTC(), "cancel requested by an operator"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*retryNode{a, b} {
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.rep.Run(rctx)
		}()
		t.Cleanup(func() {
			stop()
			<-done
		})
	}
	claimWaitFor(t, "the other report sent, the cancelled one cancelled on both", func() (bool, string) {
		sa, _ := claimStatuses(t, stA, ids)
		sb, _ := claimStatuses(t, stB, ids)
		return sa[store.OutboxSent] == 1 && sa[store.OutboxCancelled] == 1 && sb[store.OutboxSent] == 1 && sb[store.OutboxCancelled] == 1,
			fmt.Sprintf("mx1 %v, mx2 %v", sa, sb)
	})

	e, err := a.rep.Retry(ctx, ids[0], time.Now().UTC(), "retry requested by an operator")
	if err != nil {
		t.Fatal(err)
	}
	if e.Requeued.IsZero() {
		t.Fatalf("the asked node's entry after Retry: %+v", e)
	}
	claimWaitFor(t, "the retried report sent, on both nodes", func() (bool, string) {
		sa, _ := claimStatuses(t, stA, ids)
		sb, _ := claimStatuses(t, stB, ids)
		return sa[store.OutboxSent] == 2 && sb[store.OutboxSent] == 2, fmt.Sprintf("mx1 %v, mx2 %v", sa, sb)
	})
	xa, _ := stA.GetOutbox(ids[0])
	xb, _ := stB.GetOutbox(ids[0])
	if !xa.Requeued.Equal(xb.Requeued) || !xa.Requeued.Equal(e.Requeued) {
		t.Errorf("requeued at %v on mx1, %v on mx2, want the operator's time %v on both", xa.Requeued, xb.Requeued, e.Requeued)
	}
	// Each report once at the desk: the retried one too.
	claimWaitFor(t, "both reports at the desk", func() (bool, string) {
		_, total := mp.arrivals(t)
		return total >= 2, fmt.Sprintf("%d messages", total)
	})
	claimExactlyOnce(t, mp, ids)
}
