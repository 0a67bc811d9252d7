package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/cluster"
	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// opLog records, per node, the actions its applier was called with and
// whether the record each names (Target) was in the node's store then.
type opLog struct {
	mu      sync.Mutex
	applied map[string]map[string]int // node -> action id -> calls
	missing map[string][]string       // node -> actions applied before their record
}

func newOpLog() *opLog {
	return &opLog{applied: map[string]map[string]int{}, missing: map[string][]string{}}
}

func (l *opLog) applier(m *clustertest.Member) ops.Applier {
	return func(_ context.Context, op *ops.Op) error {
		_, err := m.Store.GetReport(op.Target)
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.applied[m.Name] == nil {
			l.applied[m.Name] = map[string]int{}
		}
		l.applied[m.Name][op.ID]++
		if err != nil {
			l.missing[m.Name] = append(l.missing[m.Name], op.ID)
		}
		return nil
	}
}

func (l *opLog) count(node, id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied[node][id]
}

func retryOp(target store.ID) *ops.Op {
	return &ops.Op{Kind: ops.Retry, At: time.Now().UTC(), By: "token ops", Reason: "test", Target: target}
}

// An action made on one node is applied there at once, and once on
// every node, after the record published before it (stream order); the
// same action again (a retried publish, or the node meeting its own
// action from the stream) changes nothing.
func TestOpEveryNodeOnce(t *testing.T) {
	log := newOpLog()
	c := clustertest.StartOps(t, 3, 3, log.applier)
	c.WaitHealthy(60 * time.Second)
	a := c.Members[0]

	e := entry(t, "before the action")
	if _, err := a.Node.Commit([]store.Entry{e}); err != nil {
		t.Fatal(err)
	}
	// Published on the second node: the first's record precedes it in
	// the stream, which the second may not have applied yet.
	b := c.Members[1]
	op := retryOp(e.Message.ID)
	ctx := context.Background()
	if err := b.Node.Replicate(ctx, op); err != nil {
		t.Fatal(err)
	}
	if n := log.count(b.Name, op.ID); n != 1 {
		t.Fatalf("the accepting node applied the action %d times when Replicate returned, want 1", n)
	}
	if ok, err := b.Store.OpApplied(op.ID); err != nil || !ok {
		t.Fatalf("the accepting node's store does not mark the action applied: %v %v", ok, err)
	}
	// The same action once more: the stream drops it as a duplicate, and
	// the node has applied it already.
	again := *op
	if err := b.Node.Replicate(ctx, &again); err != nil {
		t.Fatal(err)
	}
	// A record published after the action is a barrier: once a node has
	// it, its consumer has passed the action.
	barrier := entry(t, "after the action")
	if _, err := a.Node.Commit([]store.Entry{barrier}); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		clustertest.Eventually(t, 60*time.Second, "barrier on "+m.Name, func() string { return has(m, barrier) })
		clustertest.Eventually(t, 30*time.Second, "action on "+m.Name, func() string {
			if n := log.count(m.Name, op.ID); n != 1 {
				return fmt.Sprintf("applied %d times", n)
			}
			return ""
		})
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for node, ids := range log.missing {
		t.Errorf("%s applied %v before the record published ahead of them", node, ids)
	}
}

// Without a quorum an action is refused with an error wrapping
// store.ErrCommit (the API's 503), and nothing is applied on the node.
func TestOpNoQuorum(t *testing.T) {
	log := newOpLog()
	c := clustertest.StartOps(t, 3, 3, log.applier)
	c.WaitHealthy(60 * time.Second)
	a := c.Members[0]
	e := entry(t, "target")
	if _, err := a.Node.Commit([]store.Entry{e}); err != nil {
		t.Fatal(err)
	}
	c.Stop(c.Members[1])
	c.Stop(c.Members[2])
	op := retryOp(e.Message.ID)
	err := a.Node.Replicate(context.Background(), op)
	if !errors.Is(err, cluster.ErrUnavailable) || !errors.Is(err, store.ErrCommit) {
		t.Fatalf("Replicate without quorum: %v, want ErrUnavailable wrapping store.ErrCommit", err)
	}
	if n := log.count(a.Name, op.ID); n != 0 {
		t.Errorf("an action without quorum was applied %d times", n)
	}
	if ok, err := a.Store.OpApplied(op.ID); err != nil || ok {
		t.Errorf("an action without quorum is marked applied: %v %v", ok, err)
	}
}

// A stream that an older version created has the records' subjects
// only: a node of this version adds the actions' on start, keeping the
// records, and actions then publish.
func TestOpSubjectsAddedToOlderStream(t *testing.T) {
	s := startNATS(t, func(*server.Options) {})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: cluster.StreamName, Subjects: []string{cluster.SubjectPrefix + ">"},
		Storage: jetstream.FileStorage, Duplicates: cluster.DuplicateWindow})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cluster.EncodeRecord([]store.Entry{entry(t, "older build")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, cluster.SubjectPrefix+"fbl", b); err != nil {
		t.Fatal(err)
	}

	m, err := startNode(t, remoteConfig(t, "mx1", "    url: \""+s.ClientURL()+"\"\n"), &config.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "stream subjects", func() string {
		st, err := js.Stream(ctx, cluster.StreamName)
		if err != nil {
			return err.Error()
		}
		subs := st.CachedInfo().Config.Subjects
		if len(subs) != 2 || subs[0] != cluster.SubjectPrefix+">" || subs[1] != cluster.OpSubjectPrefix+">" {
			return fmt.Sprintf("subjects %v", subs)
		}
		if n := st.CachedInfo().State.Msgs; n != 1 {
			return fmt.Sprintf("%d messages, want the older record kept", n)
		}
		return ""
	})
	clustertest.Eventually(t, 30*time.Second, "node ready", func() string {
		if h := m.Node.Health(); !h.OK {
			return h.Reason
		}
		return ""
	})
	// This node has no applier: the action publishes, then is skipped.
	err = m.Node.Replicate(ctx, retryOp(store.ID{1}))
	if err == nil || !errors.Is(err, ops.ErrSkip) {
		t.Fatalf("an action on the upgraded stream: %v, want published and skipped here", err)
	}
}
