package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// startNATS runs an embedded NATS server with JetStream on 127.0.0.1
// and a random port, storing in a temporary directory, until t ends.
func claimNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		ServerName: "claims-test", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// connect opens a client connection to s for one node, closed when t
// ends (or earlier by the test).
func claimConnect(t *testing.T, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// claimNode returns the Claims of a node named name on its own
// connection.
func claimNode(t *testing.T, s *server.Server, name string, m *metrics.Metrics) (*Claims, *nats.Conn) {
	t.Helper()
	nc, js := claimConnect(t, s)
	c, err := NewClaims(js, ClaimOptions{Node: name, Kind: metrics.ClaimReport, Window: time.Hour, Horizon: 2 * time.Hour, MarkerTTL: time.Minute, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	return c, nc
}

func claimID(t *testing.T) store.ID {
	t.Helper()
	id, err := store.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func claimCount(t *testing.T, m *metrics.Metrics, outcome string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "xarfd_cluster_claims_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return s.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// Two nodes claim the same incident: one wins, the other sees the live
// claim; once sent, the other sees who sent it, for this report and for
// another report of the incident within the window; a report of the
// same fingerprint after the window is a new incident.
func TestClaimOnce(t *testing.T) {
	s := claimNATS(t)
	ma, mb := metrics.New(), metrics.New()
	a, _ := claimNode(t, s, "mx1", ma)
	b, _ := claimNode(t, s, "mx2", mb)
	ctx := context.Background()
	id, other, later := claimID(t), claimID(t), claimID(t)
	created := time.Now().UTC()

	la, held, err := a.Claim(ctx, "fp.1", id, created, time.Minute)
	if err != nil || la == nil || held != nil {
		t.Fatalf("first claim: %v %v %+v", err, la, held)
	}
	lb, held, err := b.Claim(ctx, "fp.1", id, created, time.Minute)
	if err != nil || lb != nil || held == nil || held.Sent || held.Node != "mx1" || held.Report != id || held.Until.Before(time.Now()) {
		t.Fatalf("second claim of a live one: %v %v %+v", err, lb, held)
	}
	if err := la.Refresh(ctx); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if err := la.Done(ctx, "<xarfd.x@mx1>"); err != nil {
		t.Fatalf("done: %v", err)
	}
	for _, r := range []store.ID{id, other} {
		lb, held, err = b.Claim(ctx, "fp.1", r, created.Add(time.Minute), time.Minute)
		if err != nil || lb != nil || held == nil || !held.Sent || held.Node != "mx1" || held.Report != id || held.MessageID != "<xarfd.x@mx1>" {
			t.Fatalf("claim of a sent incident (report %s): %v %v %+v", r, err, lb, held)
		}
	}
	// The node that sent it goes on with recipients left, and keeps the
	// record sent.
	la, held, err = a.Claim(ctx, "fp.1", id, created, time.Minute)
	if err != nil || la == nil || held != nil {
		t.Fatalf("own sent claim: %v %v %+v", err, la, held)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, held, _ := b.Claim(ctx, "fp.1", id, created, time.Minute); held == nil || !held.Sent {
		t.Fatalf("releasing a sent record deleted it: %+v", held)
	}
	lb, held, err = b.Claim(ctx, "fp.1", later, created.Add(2*time.Hour), time.Minute)
	if err != nil || lb == nil || held != nil {
		t.Fatalf("same fingerprint after the window: %v %v %+v", err, lb, held)
	}
	if got := claimCount(t, mb, metrics.ClaimSentElsewhere); got != 3 {
		t.Errorf("sent elsewhere counted %v, want 3", got)
	}
	if got := claimCount(t, mb, metrics.ClaimLost); got != 1 {
		t.Errorf("lost counted %v, want 1", got)
	}
}

// A released claim is free at once; a claim of a node that died (its
// connection gone, no refresh, no release) expires and another node
// takes it over; the dead node's lease then refuses to go on.
func TestClaimReleaseAndTakeover(t *testing.T) {
	s := claimNATS(t)
	ma, mb := metrics.New(), metrics.New()
	a, nca := claimNode(t, s, "mx1", ma)
	b, _ := claimNode(t, s, "mx2", mb)
	ctx := context.Background()
	id := claimID(t)
	now := time.Now().UTC()

	la, _, err := a.Claim(ctx, "fp.2", id, now, time.Minute)
	if err != nil || la == nil {
		t.Fatal(err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lb, held, err := b.Claim(ctx, "fp.2", id, now, time.Minute)
	if err != nil || lb == nil {
		t.Fatalf("claim after release: %v %+v", err, held)
	}
	if err := la.Refresh(ctx); !errors.Is(err, reporter.ErrClaimLost) {
		t.Fatalf("refresh of a released claim that another node took: %v", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// mx1 claims for a second and dies.
	dead, _, err := a.Claim(ctx, "fp.3", id, now, time.Second)
	if err != nil || dead == nil {
		t.Fatal(err)
	}
	nca.Close()
	var won reporter.Lease
	for won == nil {
		l, held, err := b.Claim(ctx, "fp.3", id, now, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if l == nil && (held == nil || held.Sent || held.Node != "mx1") {
			t.Fatalf("while mx1's claim lives: %+v", held)
		}
		won = l
		if won == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if got := claimCount(t, mb, metrics.ClaimTakenOver); got != 1 {
		t.Errorf("taken over counted %v, want 1", got)
	}
	if err := won.Done(ctx, "<m>"); err != nil {
		t.Fatal(err)
	}
	// mx1 comes back with its old lease: it may not go on.
	_, js := claimConnect(t, s)
	a2, err := NewClaims(js, ClaimOptions{Node: "mx1", Kind: metrics.ClaimReport, Window: time.Hour, Horizon: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	dead.(*lease).c = a2
	if err := dead.Refresh(ctx); !errors.Is(err, reporter.ErrClaimLost) {
		t.Fatalf("refresh of an expired claim: %v", err)
	}
	if err := dead.Done(ctx, "<m>"); !errors.Is(err, reporter.ErrClaimLost) {
		t.Fatalf("done of an expired claim: %v", err)
	}
}

// A node's own claim left by a process that stopped is taken over at
// once by the node's next process; another node's is not.
func TestClaimOwnLeftover(t *testing.T) {
	s := claimNATS(t)
	m := metrics.New()
	a, _ := claimNode(t, s, "mx1", m)
	ctx := context.Background()
	id := claimID(t)
	if l, _, err := a.Claim(ctx, "fp.4", id, time.Now(), time.Hour); err != nil || l == nil {
		t.Fatal(err)
	}
	a2, _ := claimNode(t, s, "mx1", m)
	if l, held, err := a2.Claim(ctx, "fp.4", id, time.Now(), time.Hour); err != nil || l == nil {
		t.Fatalf("own leftover claim: %v %+v", err, held)
	}
	b, _ := claimNode(t, s, "mx2", metrics.New())
	if l, held, err := b.Claim(ctx, "fp.4", id, time.Now(), time.Hour); err != nil || l != nil || held == nil {
		t.Fatalf("another node took a live claim: %v %+v", err, held)
	}
	// The same process takes its own claim of the same report again (an
	// attempt whose answer was unknown left it), not one of another
	// report of the incident.
	if l, held, err := a2.Claim(ctx, "fp.4", id, time.Now(), time.Hour); err != nil || l == nil {
		t.Fatalf("own claim of the same report: %v %+v", err, held)
	}
	if l, held, err := a2.Claim(ctx, "fp.4", claimID(t), time.Now(), time.Hour); err != nil || l != nil || held == nil || held.Node != "mx1" {
		t.Fatalf("own claim of another report: %v %+v", err, held)
	}
}

// The rate counters hold across nodes: perHour reports to a contact in
// all; a report to several contacts, one of them over its allowance,
// counts for none.
func TestRateTakeAcrossNodes(t *testing.T) {
	s := claimNATS(t)
	a, _ := claimNode(t, s, "mx1", nil)
	b, _ := claimNode(t, s, "mx2", nil)
	ctx := context.Background()
	now := time.Now().UTC()
	for i, c := range []*Claims{a, b, a} {
		lim, err := c.RateTake(ctx, []string{"abuse@desk.test"}, now.Add(time.Duration(i)*time.Second), 3)
		if err != nil || lim != nil {
			t.Fatalf("take %d: %v %+v", i, err, lim)
		}
	}
	lim, err := b.RateTake(ctx, []string{"other@desk.test", "ABUSE@desk.test"}, now.Add(time.Minute), 3)
	if err != nil || lim == nil || lim.Contact != "ABUSE@desk.test" || !lim.Until.Equal(now.Add(time.Hour)) {
		t.Fatalf("over the limit: %v %+v", err, lim)
	}
	// other@ was given back: three more fit.
	for i := range 3 {
		if lim, err := a.RateTake(ctx, []string{"other@desk.test"}, now.Add(time.Minute+time.Duration(i)), 3); err != nil || lim != nil {
			t.Fatalf("other take %d: %v %+v", i, err, lim)
		}
	}
	// An hour after the first report its slot is free again.
	if lim, err := b.RateTake(ctx, []string{"abuse@desk.test"}, now.Add(time.Hour), 3); err != nil || lim != nil {
		t.Fatalf("after an hour: %v %+v", err, lim)
	}
}

// Many goroutines of two nodes race for the same claims: each key is won
// exactly once.
func TestClaimRace(t *testing.T) {
	s := claimNATS(t)
	a, _ := claimNode(t, s, "mx1", nil)
	b, _ := claimNode(t, s, "mx2", nil)
	ctx := context.Background()
	const keys, racers = 20, 4
	wins := make(chan string, keys*racers*2)
	done := make(chan error, racers*2)
	for _, c := range []*Claims{a, b} {
		for range racers {
			// Each racer stands for another report of the incidents (one
			// process holds a report in one worker at a time).
			id := claimID(t)
			go func() {
				for k := range keys {
					l, _, err := c.Claim(ctx, "race."+string(rune('a'+k)), id, time.Now(), time.Minute)
					if err != nil {
						done <- err
						return
					}
					if l != nil {
						wins <- string(rune('a' + k))
					}
				}
				done <- nil
			}()
		}
	}
	for range racers * 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	close(wins)
	got := map[string]int{}
	for k := range wins {
		got[k]++
	}
	if len(got) != keys {
		t.Fatalf("%d keys won, want %d", len(got), keys)
	}
	for k, n := range got {
		if n != 1 {
			t.Errorf("key %s won %d times", k, n)
		}
	}
}

// Sent records outlive the de-duplication window and every retry; a
// notification's stays sent as long as the bucket keeps it.
func TestClaimOptionsFromConfig(t *testing.T) {
	for _, c := range []struct {
		giveUp string
		want   time.Duration
	}{
		{"1h", 24*time.Hour + 15*time.Minute + time.Hour},
		{"72h", 72*time.Hour + 15*time.Minute + time.Hour},
	} {
		cfg, err := config.Parse([]byte("hostname: h.test\nsender: {org: O, contact: abuse@h.test, domain: h.test}\nreporter: {retry: {give_up_after: "+c.giveUp+"}}\nchannels: [{name: trap, kind: trap, addresses: [\"*@trap.h.test\"]}]\n"), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		r := ReportClaimOptions(cfg, "mx1", 3, nil)
		if r.Horizon != c.want || r.Window != 24*time.Hour || r.Kind != metrics.ClaimReport || r.Replicas != 3 {
			t.Errorf("give_up_after %s: report options %+v, want horizon %s", c.giveUp, r, c.want)
		}
		n := NotifyClaimOptions(cfg, "mx1", 3, nil)
		if n.Horizon != c.want || n.Window != n.Horizon || n.Kind != metrics.ClaimNotification {
			t.Errorf("give_up_after %s: notify options %+v", c.giveUp, n)
		}
		if r := RestrictClaimOptions(cfg, "mx1", 3, nil); r.Horizon != c.want || r.Window != r.Horizon || r.Kind != metrics.ClaimRestrict {
			t.Errorf("give_up_after %s: restrict options %+v", c.giveUp, r)
		}
	}
}

// BenchmarkClaimDone is what a report costs in claims on one embedded
// server: the leader read, the claim and the record of it sent.
func BenchmarkClaimDone(b *testing.B) {
	s, err := server.NewServer(&server.Options{ServerName: "bench", Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: b.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		b.Fatal("the NATS server did not start")
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	c, err := NewClaims(js, ClaimOptions{Node: "mx1", Kind: metrics.ClaimReport, Window: time.Hour, Horizon: 2 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	id := store.ID{1}
	b.ResetTimer()
	for i := range b.N {
		l, _, err := c.Claim(ctx, fmt.Sprintf("bench.%d", i), id, time.Now(), time.Minute)
		if err != nil || l == nil {
			b.Fatal(err)
		}
		if err := l.Done(ctx, "<m>"); err != nil {
			b.Fatal(err)
		}
	}
}
