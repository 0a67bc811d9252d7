package store

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// countCommits opens a store in dir that counts its durable transactions.
func countCommits(t *testing.T, dir string) (*Store, *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	s, err := Open(dir, Options{OnCommit: func(int, time.Duration) { n.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, n
}

// mark returns how many commits n counted up to now. OnCommit runs after
// a commit's callers are told, so it reads n in the commit after an empty
// one: by then the empty one, and all before it, were counted. The
// difference of two marks counts 2 commits of its own.
func mark(t *testing.T, s *Store, n *atomic.Int64) int64 {
	t.Helper()
	var v int64
	if err := s.Commit(func(*bbolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(func(*bbolt.Tx) error { v = n.Load(); return nil }); err != nil {
		t.Fatal(err)
	}
	return v
}

// ClaimBatch claims what is due in one commit and refuses, per entry,
// what is not: one already claimed, one not due yet, the same id twice.
func TestClaimBatch(t *testing.T) {
	s, commits := countCommits(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	a, b, held, later := queued(t, s, now), queued(t, s, now), queued(t, s, now), queued(t, s, now.Add(time.Hour))
	if _, err := s.Claim(held, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	before := mark(t, s, commits)
	res, err := s.ClaimBatch([]ID{a, held, b, later, a}, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got := mark(t, s, commits) - before - 2; got != 1 {
		t.Errorf("ClaimBatch of 5 made %d commits, want 1", got)
	}
	for i, want := range []bool{true, false, true, false, false} {
		if got := res[i].Err == nil; got != want {
			t.Errorf("result %d: claimed %v, want %v (%v)", i, got, want, res[i].Err)
		}
		if want {
			if e := res[i].Entry; e.Status != OutboxSending || !e.LeaseUntil.Equal(now.Add(time.Minute)) {
				t.Errorf("result %d: %+v", i, e)
			}
			continue
		}
		illegal(t, "claim in a batch", res[i].Err)
	}
	if x, _ := s.GetOutbox(later); x.Status != OutboxPending {
		t.Errorf("the entry not due: %s", x.Status)
	}
}

// The process dies between a batch's claim and its settlement: every
// claimed entry waits for its lease, is due after it, and is claimed again
// with the interruption recorded.
func TestClaimBatchThenCrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	ids := []ID{queued(t, s, now), queued(t, s, now), queued(t, s, now)}
	if _, err := s.ClaimBatch(ids, now, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if due := dueIDs(t, s, now.Add(time.Minute)); len(due) != 0 {
		t.Fatalf("due within their lease after reopening: %v", due)
	}
	due := dueIDs(t, s, now.Add(10*time.Minute))
	for _, id := range ids {
		if !due[id] {
			t.Fatalf("%s not due after its lease", id)
		}
	}
	res, err := s.ClaimBatch(ids, now.Add(10*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Entry.LastError == "" {
			t.Fatalf("claim after the lease: %+v", r)
		}
	}
}

// Settle records every chain in one commit; a refused step is refused
// alone, and ends its own chain only.
func TestSettle(t *testing.T) {
	s, commits := countCommits(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	a, dup, wh, pending, gone := queued(t, s, now), queued(t, s, now), queued(t, s, now), queued(t, s, now), freshID(t)
	if _, err := s.ClaimBatch([]ID{a, dup, wh}, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("81.2.69.142")
	m := &RenderedMail{Format: "xarf", MessageID: "<a@x>", Raw: []byte("rendered")}
	before := mark(t, s, commits)
	res, err := s.Settle([][]Step{
		{DedupStep(a, now, src, "fp", time.Hour), SetContactStep(a, now, []string{"abuse@isp.example"}, "static", nil), DryRunStep(a, now, m, "dry")},
		{WithholdStep(pending, now, "x", src)}, // not claimed: refused
		{DedupStep(dup, now, src, "fp", time.Hour), SetContactStep(dup, now, []string{"x@y"}, "", nil)}, // a duplicate of a
		{WithholdStep(wh, now, "private", src), DryRunStep(wh, now, nil, "x")},                          // withheld, then nothing
		{WithholdStep(gone, now, "x", src)},                                                             // no such entry
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mark(t, s, commits) - before - 2; got != 1 {
		t.Errorf("Settle made %d commits, want 1", got)
	}
	for j, r := range res[0] {
		if r.Err != nil {
			t.Fatalf("step %d of the first chain: %v", j, r.Err)
		}
	}
	illegal(t, "withhold of a pending entry in a batch", res[1][0].Err)
	if r := res[2][0]; r.Err != nil || !r.Duplicate || r.Primary != a {
		t.Errorf("dedup in a batch: %+v", r)
	}
	if !errors.Is(res[2][1].Err, ErrSkipped) || !errors.Is(res[3][1].Err, ErrSkipped) {
		t.Errorf("steps after the end of a claim: %v, %v", res[2][1].Err, res[3][1].Err)
	}
	if !errors.Is(res[4][0].Err, ErrNotFound) {
		t.Errorf("step of a missing entry: %v", res[4][0].Err)
	}

	want := map[ID]OutboxStatus{a: OutboxDryRun, dup: OutboxDuplicate, wh: OutboxWithheld, pending: OutboxPending}
	for id, st := range want {
		if x, _ := s.GetOutbox(id); x.Status != st {
			t.Errorf("%s: %s, want %s", id, x.Status, st)
		}
	}
	x, _ := s.GetOutbox(a)
	if x.Count != 2 || x.Contact != "abuse@isp.example" || x.MessageID != "<a@x>" {
		t.Errorf("settled entry: %+v", x)
	}
	if raw, err := s.OutboxMail(a); err != nil || string(raw) != "rendered" {
		t.Errorf("rendered mail: %q %v", raw, err)
	}
	if d := dueIDs(t, s, now.Add(time.Hour)); d[a] || d[dup] || d[wh] || !d[pending] {
		t.Errorf("due after settling: %v", d)
	}
}

// A store error in one step abandons the whole batch: nothing of it is
// recorded, and the claimed entries keep their leases.
func TestSettleStoreErrorRecordsNothing(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	a, b := queued(t, s, now), queued(t, s, now)
	if _, err := s.ClaimBatch([]ID{a, b}, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	errDisk := errors.New("disk full")
	broken := Step{ID: b, op: "break", check: from(OutboxSending), apply: func(_ *bbolt.Tx, e *OutboxEntry, _ *StepResult) error {
		e.Status = OutboxSent
		return errDisk
	}}
	_, err := s.Settle([][]Step{{WithholdStep(a, now, "x", netip.Addr{})}, {broken}})
	if !errors.Is(err, errDisk) {
		t.Fatalf("settle with a failing step: %v", err)
	}
	for _, id := range []ID{a, b} {
		if x, _ := s.GetOutbox(id); x.Status != OutboxSending || !x.LeaseUntil.Equal(now.Add(time.Minute)) {
			t.Errorf("%s after a failed batch: %s, lease %s", id, x.Status, x.LeaseUntil)
		}
	}
	if _, err := s.Settle([][]Step{{WithholdStep(a, now, "x", netip.Addr{}), WithholdStep(b, now, "x", netip.Addr{})}}); err == nil {
		t.Error("a chain of two entries was accepted")
	}
}

func freshID(t *testing.T) ID {
	t.Helper()
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
