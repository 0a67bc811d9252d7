package store

import (
	"errors"
	"testing"
	"time"
)

// queued stores one report with a pending outbox entry created at now.
func queued(t *testing.T, s *Store, now time.Time) ID {
	t.Helper()
	m := msg(t, "x")
	if err := s.Put([]Entry{{Message: m, Raw: []byte("x"), Report: &Report{ID: m.ID, Channel: "x", XARF: []byte(`{}`)},
		Outbox: &OutboxEntry{ID: m.ID, Channel: "x", Status: OutboxPending, Created: now}}}); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func illegal(t *testing.T, what string, err error) {
	t.Helper()
	var te *TransitionError
	if !errors.Is(err, ErrIllegalTransition) || !errors.As(err, &te) {
		t.Fatalf("%s: %v, want an illegal transition", what, err)
	}
}

func dueIDs(t *testing.T, s *Store, at time.Time) map[ID]bool {
	t.Helper()
	due, _, err := s.DueOutbox(at, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[ID]bool{}
	for _, e := range due {
		out[e.ID] = true
	}
	return out
}

func TestOutboxTransitions(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	id := queued(t, s, now)

	if _, err := s.Claim(id, now.Add(-time.Second), time.Minute); err == nil {
		t.Fatal("claimed before it was due")
	} else {
		illegal(t, "claim before due", err)
	}
	for name, fn := range map[string]func() error{
		"mark sent": func() error { _, err := s.MarkSent(id, now, "", false); return err },
		"give up":   func() error { _, err := s.GiveUp(id, now, "", "x", nil); return err },
		"retry":     func() error { _, err := s.Retry(id, now, now, "", "x", nil); return err },
		"withhold":  func() error { _, err := s.Withhold(id, now, "x", msg(t, "x").Envelope.PeerIP); return err },
		"dry-run":   func() error { _, err := s.DryRun(id, now, nil, "x"); return err },
		"transmit":  func() error { return s.MarkTransmitted(id, now) },
	} {
		illegal(t, name+" of a pending entry", fn())
	}
	e, err := s.Claim(id, now, time.Minute)
	if err != nil || e.Status != OutboxSending || !e.LeaseUntil.Equal(now.Add(time.Minute)) {
		t.Fatalf("claim: %+v %v", e, err)
	}
	_, err = s.Claim(id, now.Add(30*time.Second), time.Minute)
	illegal(t, "claim within the lease", err)
	_, err = s.Cancel(id, now, "x")
	illegal(t, "cancel while sending", err)
	_, err = s.Requeue(id, now, "x")
	illegal(t, "requeue while sending", err)
	if due := dueIDs(t, s, now.Add(59*time.Second)); due[id] {
		t.Fatal("a leased entry is due before its lease ends")
	}
	if due := dueIDs(t, s, now.Add(time.Minute)); !due[id] {
		t.Fatal("an entry whose lease ran out is not due")
	}

	// A delivery that got as far as the final dot, then its holder
	// vanished: the next claim counts a possible resend.
	if _, err := s.SetContact(id, now, []string{"a@desk.example", "b@desk.example"}, "static", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.BeginDelivery(id, now, time.Minute, 10, &RenderedMail{MessageID: "<m>", Raw: []byte("mail")}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkTransmitted(id, now); err != nil {
		t.Fatal(err)
	}
	e, err = s.Claim(id, now.Add(2*time.Minute), time.Minute)
	if err != nil || e.Resent != 1 || e.Transmitted || e.Attempts != 1 {
		t.Fatalf("reclaim after lease: %+v %v", e, err)
	}
	if raw, err := s.OutboxMail(id); err != nil || string(raw) != "mail" {
		t.Fatalf("rendered mail %q %v", raw, err)
	}

	// One recipient refuses, the other takes it: sent, and the refusal
	// is said.
	if _, err := s.RecordTransaction(id, now, Transaction{Accepted: []string{"a@desk.example"},
		Rejected: map[string]string{"b@desk.example": "550 no"}, Reply: "250 ok"}); err != nil {
		t.Fatal(err)
	}
	e, err = s.MarkSent(id, now, "", false)
	if err != nil || e.Status != OutboxSent || e.Reason == "" || !e.LeaseUntil.IsZero() {
		t.Fatalf("mark sent: %+v %v", e, err)
	}
	if due := dueIDs(t, s, now.Add(time.Hour)); due[id] {
		t.Fatal("a sent entry is due")
	}
	for name, fn := range map[string]func() error{
		"requeue": func() error { _, err := s.Requeue(id, now, "x"); return err },
		"cancel":  func() error { _, err := s.Cancel(id, now, "x"); return err },
		"claim":   func() error { _, err := s.Claim(id, now.Add(time.Hour), time.Minute); return err },
		"retry":   func() error { _, err := s.Retry(id, now, now, "", "x", nil); return err },
	} {
		illegal(t, name+" of a sent entry", fn())
	}

	// Failed, requeued: pending now, the refusals forgotten, give-up
	// counted from the requeue.
	id2 := queued(t, s, now)
	if _, err := s.Claim(id2, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetContact(id2, now, []string{"c@desk.example"}, "static", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTransaction(id2, now, Transaction{Rejected: map[string]string{"c@desk.example": "550 no"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GiveUp(id2, now, "550 no", "refused", nil); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	e, err = s.Requeue(id2, later, "operator")
	if err != nil || e.Status != OutboxPending || len(e.Rejected) != 0 || !e.Requeued.Equal(later) || len(e.Remaining()) != 1 {
		t.Fatalf("requeue of failed: %+v %v", e, err)
	}
	if !dueIDs(t, s, later)[id2] {
		t.Fatal("requeued entry not due")
	}
	if e, err = s.Cancel(id2, later, "operator"); err != nil || e.Status != OutboxCancelled {
		t.Fatalf("cancel: %+v %v", e, err)
	}
	if dueIDs(t, s, later.Add(time.Hour))[id2] {
		t.Fatal("a cancelled entry is due")
	}
	if _, err := s.Requeue(id2, later, "operator"); err != nil {
		t.Fatal(err)
	}

	unknown, _ := NewID()
	if _, err := s.Requeue(unknown, now, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

// A rate-limited attempt counts nothing: the recipients counted before
// the one over its allowance are rolled back.
func TestBeginDeliveryRateLimitRollsBack(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	start := func(rcpts ...string) (*OutboxEntry, *RateLimit) {
		t.Helper()
		id := queued(t, s, now)
		if _, err := s.Claim(id, now, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetContact(id, now, rcpts, "static", nil); err != nil {
			t.Fatal(err)
		}
		e, lim, err := s.BeginDelivery(id, now, time.Minute, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e, lim
	}
	if _, lim := start("a@x.example"); lim != nil {
		t.Fatalf("first report limited: %+v", lim)
	}
	e, lim := start("b@x.example", "a@x.example")
	if lim == nil || lim.Contact != "a@x.example" || e.Status != OutboxPending || !e.NextAttempt.Equal(now.Add(time.Hour)) || e.Attempts != 0 {
		t.Fatalf("over the limit: %+v %+v", e, lim)
	}
	if _, lim := start("b@x.example"); lim != nil {
		t.Fatalf("b was counted by the rolled-back attempt: %+v", lim)
	}
}

// The process dies between the claim and the send: after reopening, the
// entry is not due while its lease runs, is due after it, and Release (at
// start) makes it due at once.
func TestClaimSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	id := queued(t, s, now)
	if _, err := s.Claim(id, now, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if dueIDs(t, s, now.Add(time.Minute))[id] {
		t.Fatal("due within its lease after reopening")
	}
	if !dueIDs(t, s, now.Add(10*time.Minute))[id] {
		t.Fatal("not due after its lease")
	}
	sending, _ := s.OutboxByStatus(OutboxSending)
	if len(sending) != 1 {
		t.Fatalf("sending after crash: %d", len(sending))
	}
	e, err := s.Release(id, now.Add(time.Minute))
	if err != nil || e.Status != OutboxPending || e.LastError == "" {
		t.Fatalf("release: %+v %v", e, err)
	}
	if !dueIDs(t, s, now.Add(time.Minute))[id] {
		t.Fatal("released entry not due")
	}
}
