package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// An operator cancels a report on node mx1: node mx2, which holds the
// same entry as pending, never sends it and settles it as cancelled,
// naming mx1; the other reports are sent. A requeue on mx2 afterwards
// sends it (once).
func TestCancelHoldsClusterWide(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	const n = 3
	cfgA := claimNodeConfig(t, "mx1.reporter.test", mp.smtp, 1000)
	cfgB := claimNodeConfig(t, "mx2.reporter.test", mp.smtp, 1000)
	stA, stB, ids := claimTwoStores(t, cfgA, n)

	// mx1's reporter only serves the operator's cancel (as the API and
	// the console call it); it does not run, so that mx2 is the one that
	// would send.
	claimsA, _ := claimNode(t, s, "mx1", metrics.New())
	repA, err := reporter.New(cfgA, stA, reporter.Options{Claims: claimsA, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := repA.Cancel(ctx, ids[0], time.Now().UTC(), "cancel requested through the API by an operator")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != store.OutboxCancelled {
		t.Fatalf("mx1's entry is %s after its cancel", e.Status)
	}

	b, _ := claimStartReporter(t, s, "mx2", cfgB, stB, reporter.Options{})
	claimWaitFor(t, "mx2 settles every entry", func() (bool, string) {
		sb, _ := claimStatuses(t, stB, ids)
		return sb[store.OutboxSent] == n-1 && sb[store.OutboxCancelled] == 1, fmt.Sprintf("mx2 %v", sb)
	})
	x, err := stB.GetOutbox(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if x.Status != store.OutboxCancelled || !strings.Contains(x.Reason, "mx1") {
		t.Errorf("mx2's entry of the cancelled report: %s (%q), want cancelled naming mx1", x.Status, x.Reason)
	}
	if got := claimCount(t, b.m, metrics.ClaimCancelled); got != 1 {
		t.Errorf("mx2 counted %v cancelled claims, want 1", got)
	}
	got, _ := mp.arrivals(t)
	if got[ids[0].String()] != 0 {
		t.Errorf("the cancelled report arrived %d times", got[ids[0].String()])
	}

	// A requeue after the cancel is the operator's word too: it sends.
	if _, err := stB.Requeue(ids[0], time.Now().UTC(), "requeue requested by an operator"); err != nil {
		t.Fatal(err)
	}
	b.rep.Wake()
	claimWaitFor(t, "mx2 sends the requeued report", func() (bool, string) {
		sb, _ := claimStatuses(t, stB, ids)
		return sb[store.OutboxSent] == n, fmt.Sprintf("mx2 %v", sb)
	})
	b.stop()
	<-b.done
	claimExactlyOnce(t, mp, ids)
}

// A cancel overwrites another node's live claim (its lease fails at the
// next refresh, before the final dot of DATA); a claim of the cancelled
// report finds it cancelled, another report of the incident does not,
// nor the report requeued after the cancel; a report sent already stays
// sent, and the cancel says so.
func TestCancelClaim(t *testing.T) {
	s := claimNATS(t)
	a, _ := claimNode(t, s, "mx1", metrics.New())
	b, _ := claimNode(t, s, "mx2", metrics.New())
	ctx := context.Background()
	id, other := claimID(t), claimID(t)
	created := time.Now().UTC().Add(-time.Minute)

	la, held, err := a.Claim(ctx, "fp.1", id, created, time.Minute)
	if err != nil || la == nil || held != nil {
		t.Fatalf("claim: %v %v %+v", err, la, held)
	}
	if sent, err := b.CancelClaim(ctx, "fp.1", id); err != nil || sent != nil {
		t.Fatalf("cancel of a live claim: %v %+v", err, sent)
	}
	if err := la.Refresh(ctx); !errors.Is(err, reporter.ErrClaimLost) {
		t.Fatalf("refresh of a cancelled claim: %v, want ErrClaimLost", err)
	}
	_, held, err = a.Claim(ctx, "fp.1", id, created, time.Minute)
	if err != nil || held == nil || !held.Cancelled || held.Node != "mx2" || held.Report != id {
		t.Fatalf("claim of a cancelled report: %v %+v", err, held)
	}
	lo, held, err := a.Claim(ctx, "fp.1", other, created, time.Minute)
	if err != nil || lo == nil || held != nil {
		t.Fatalf("claim of another report of the incident: %v %v %+v", err, lo, held)
	}
	if err := lo.Done(ctx, "<xarfd.o@mx1>"); err != nil {
		t.Fatal(err)
	}

	if _, err := b.CancelClaim(ctx, "fp.2", id); err != nil {
		t.Fatal(err)
	}
	lr, held, err := a.Claim(ctx, "fp.2", id, time.Now().UTC().Add(time.Second), time.Minute)
	if err != nil || lr == nil || held != nil {
		t.Fatalf("claim of a report requeued after its cancel: %v %v %+v", err, lr, held)
	}
	if err := lr.Done(ctx, "<xarfd.r@mx1>"); err != nil {
		t.Fatal(err)
	}
	sent, err := b.CancelClaim(ctx, "fp.2", id)
	if err != nil || sent == nil || !sent.Sent || sent.Node != "mx1" || sent.MessageID != "<xarfd.r@mx1>" {
		t.Fatalf("cancel of a sent report: %v %+v", err, sent)
	}
	_, held, err = b.Claim(ctx, "fp.2", id, created, time.Minute)
	if err != nil || held == nil || !held.Sent {
		t.Fatalf("claim after cancelling a sent report: %v %+v, want sent", err, held)
	}
}

// With NATS gone an operator's cancel cannot be recorded cluster-wide:
// the error wraps store.ErrCommit (the API's and console's 503, try
// again) and the entry stays pending on this node.
func TestCancelWithoutNATS(t *testing.T) {
	s := claimNATS(t)
	cfgA := claimNodeConfig(t, "mx1.reporter.test", "127.0.0.1:9", 1000)
	stA, _, ids := claimTwoStores(t, cfgA, 1)
	claimsA, _ := claimNode(t, s, "mx1", metrics.New())
	repA, err := reporter.New(cfgA, stA, reporter.Options{Claims: claimsA, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	_, err = repA.Cancel(context.Background(), ids[0], time.Now().UTC(), "cancel requested through the API by an operator")
	if !errors.Is(err, store.ErrCommit) {
		t.Fatalf("cancel without NATS: %v, want an error wrapping store.ErrCommit", err)
	}
	e, err := stA.GetOutbox(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != store.OutboxPending {
		t.Errorf("the entry is %s after a refused cancel, want pending", e.Status)
	}
}
