package store

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// claimed stores a pending entry and claims it.
func claimed(t *testing.T, s *Store, now time.Time) ID {
	t.Helper()
	id := queued(t, s, now)
	if _, err := s.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	return id
}

// Another node sent this very report: the entry is sent here too, names
// the node and keeps nothing due; a report of the same incident that
// another node sent makes it a duplicate of that report instead.
func TestMarkSentElsewhere(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	at := now.Add(-time.Minute)

	id := claimed(t, s, now)
	e, err := s.MarkSentElsewhere(id, now, SentElsewhere{Node: "mx2", Report: id, At: at, MessageID: "<xarfd.x@mx2>"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != OutboxSent || e.SentBy != "mx2" || !e.SentAt.Equal(at) || e.MessageID != "<xarfd.x@mx2>" || e.Attempts != 0 || !e.LeaseUntil.IsZero() {
		t.Fatalf("sent elsewhere: %+v", e)
	}
	if dueIDs(t, s, now.Add(time.Hour))[id] {
		t.Fatal("an entry sent elsewhere is still due")
	}
	if _, err := s.Requeue(id, now, "x"); err == nil {
		t.Fatal("an entry sent elsewhere was requeued")
	}
	// Its history names the node that sent it.
	if h, err := s.AttemptsOf(id); err != nil || len(h.Attempts) != 1 || h.Attempts[0].Outcome != AttemptSentElsewhere ||
		h.Attempts[0].Node != "mx2" || !strings.Contains(h.Attempts[0].Detail, "recorded by") {
		t.Fatalf("history of an entry sent elsewhere: %+v %v", h, err)
	}

	other := claimed(t, s, now)
	dup := claimed(t, s, now)
	e, err = s.MarkSentElsewhere(dup, now, SentElsewhere{Node: "mx3", Report: other, At: at}, true)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != OutboxDuplicate || e.DuplicateOf != other || e.SentBy != "mx3" || e.DataDeleted {
		t.Fatalf("same incident sent elsewhere: %+v", e)
	}
	if _, err := s.Raw(dup); err != nil {
		t.Fatalf("a duplicate's evidence was forgotten: %v", err)
	}

	// Only a claimed entry can be settled so.
	pending := queued(t, s, now)
	_, err = s.MarkSentElsewhere(pending, now, SentElsewhere{Node: "mx2", Report: pending, At: at}, false)
	illegal(t, "sent elsewhere of a pending entry", err)

	// forget drops the report's data as MarkSent does.
	gone := claimed(t, s, now)
	if _, err := s.MarkSentElsewhere(gone, now, SentElsewhere{Node: "mx2", Report: gone, At: at}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Raw(gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("forgotten evidence: %v", err)
	}
}

// Wait defers a claimed entry without counting a failure; a negative
// perHour makes BeginDelivery count nothing (a cluster's shared counters
// do) and WaitRate records the wait those decided.
func TestWaitAndUncountedDelivery(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	id := claimed(t, s, now)
	e, err := s.Wait(id, now, now.Add(time.Minute), "claimed by mx2")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != OutboxPending || e.Retries != 0 || !e.NextAttempt.Equal(now.Add(time.Minute)) || e.Reason != "claimed by mx2" {
		t.Fatalf("waiting: %+v", e)
	}
	if dueIDs(t, s, now)[id] || !dueIDs(t, s, now.Add(time.Minute))[id] {
		t.Fatal("a waiting entry is due at the wrong time")
	}

	for range 3 {
		id := claimed(t, s, now)
		if _, err := s.SetContact(id, now, []string{"a@x.example"}, "static", nil); err != nil {
			t.Fatal(err)
		}
		if _, lim, err := s.BeginDelivery(id, now, time.Minute, -1, nil); err != nil || lim != nil {
			t.Fatalf("uncounted delivery: %v %+v", err, lim)
		}
	}
	id = claimed(t, s, now)
	if _, err := s.SetContact(id, now, []string{"a@x.example"}, "static", nil); err != nil {
		t.Fatal(err)
	}
	if _, lim, err := s.BeginDelivery(id, now, time.Minute, 1, nil); err != nil || lim != nil {
		t.Fatalf("the uncounted deliveries were counted: %v %+v", err, lim)
	}
	id = claimed(t, s, now)
	e, err = s.WaitRate(id, now, 1, RateLimit{Contact: "a@x.example", Until: now.Add(time.Hour)})
	if err != nil || e.Status != OutboxPending || !e.NextAttempt.Equal(now.Add(time.Hour)) || e.Retries != 0 {
		t.Fatalf("rate wait: %v %+v", err, e)
	}
}
