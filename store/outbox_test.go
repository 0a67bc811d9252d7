package store

import (
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestOutboxDueIndexFollowsState(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	var ids []ID
	for i := range 3 {
		m := msg(t, "trap")
		ids = append(ids, m.ID)
		e := &OutboxEntry{ID: m.ID, Channel: "trap", Status: OutboxPending, Created: now.Add(time.Duration(i) * time.Second)}
		if err := s.Put([]Entry{{Message: m, Raw: []byte("x"), Outbox: e}}); err != nil {
			t.Fatal(err)
		}
	}
	due, next, err := s.DueOutbox(now.Add(1500*time.Millisecond), 10)
	if err != nil || len(due) != 2 || due[0].ID != ids[0] || due[1].ID != ids[1] {
		t.Fatalf("due = %v, %v", due, err)
	}
	if !next.Equal(now.Add(2 * time.Second)) {
		t.Fatalf("next = %v, want %v", next, now.Add(2*time.Second))
	}
	// Claim the first, defer the second by a minute.
	at := now.Add(1500 * time.Millisecond)
	if _, err := s.Claim(ids[0], at, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ids[1], at, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Retry(ids[1], at, now.Add(time.Minute), "451 later", "temporary failure", nil); err != nil {
		t.Fatal(err)
	}
	due, _, _ = s.DueOutbox(now.Add(10*time.Second), 10)
	if len(due) != 1 || due[0].ID != ids[2] {
		t.Fatalf("after claim and deferral due = %v", due)
	}
	due, _, _ = s.DueOutbox(now.Add(2*time.Minute), 10)
	if len(due) != 2 {
		t.Fatalf("after a minute due = %v", due)
	}
	sending, _ := s.OutboxByStatus(OutboxSending)
	if len(sending) != 1 || sending[0].ID != ids[0] {
		t.Fatalf("sending = %v", sending)
	}
	// Retention removes an entry: its index key goes stale and is dropped.
	if n, err := s.Sweep("trap", now.Add(time.Hour)); err != nil || n != 3 {
		t.Fatalf("sweep %d %v", n, err)
	}
	due, _, _ = s.DueOutbox(now.Add(2*time.Minute), 10)
	if len(due) != 0 {
		t.Fatalf("swept entries still due: %v", due)
	}
}

func TestDedupRateAndContacts(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now()
	a, b, c := msg(t, "x").ID, msg(t, "x").ID, msg(t, "x").ID
	if err := s.Put([]Entry{{Message: &Message{ID: a, Channel: "x"}, Outbox: &OutboxEntry{ID: a, Status: OutboxPending}}}); err != nil {
		t.Fatal(err)
	}
	err := s.Commit(func(tx *bbolt.Tx) error {
		if p, dup, _ := DedupTx(tx, "fp", a, now, time.Hour); dup || p != a {
			t.Errorf("first: %v %v", p, dup)
		}
		if p, dup, _ := DedupTx(tx, "fp", b, now.Add(time.Minute), time.Hour); !dup || p != a {
			t.Errorf("second within window: %v %v", p, dup)
		}
		if p, dup, _ := DedupTx(tx, "fp", c, now.Add(2*time.Hour), time.Hour); dup || p != c {
			t.Errorf("after window: %v %v", p, dup)
		}
		for i := range 2 {
			if ok, _, _ := RateTakeTx(tx, "abuse@x", now.Add(time.Duration(i)*time.Minute), 2); !ok {
				t.Errorf("take %d refused", i)
			}
		}
		ok, free, _ := RateTakeTx(tx, "abuse@x", now.Add(5*time.Minute), 2)
		if ok || !free.Equal(now.Add(time.Hour)) {
			t.Errorf("third take: %v, free %v", ok, free)
		}
		if ok, _, _ := RateTakeTx(tx, "abuse@x", now.Add(61*time.Minute), 2); !ok {
			t.Error("take after an hour refused")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutContact("ip:1", &CachedContact{Emails: []string{"abuse@x"}, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.Contact("ip:1", now); !ok || got.Emails[0] != "abuse@x" {
		t.Fatalf("contact %v %v", got, ok)
	}
	if _, ok, _ := s.Contact("ip:1", now.Add(2*time.Hour)); ok {
		t.Fatal("expired contact returned")
	}
}

func TestForgetReportAndPruneMail(t *testing.T) {
	s := open(t, t.TempDir())
	m := msg(t, "x")
	rep := &Report{ID: m.ID, Channel: "x", XARF: []byte(`{}`)}
	e := &OutboxEntry{ID: m.ID, Channel: "x", Status: OutboxPending}
	if err := s.Put([]Entry{{Message: m, Raw: []byte("evidence"), Report: rep, Outbox: e}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(func(tx *bbolt.Tx) error { return PutOutboxMailTx(tx, m.ID, []byte("rendered")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(func(tx *bbolt.Tx) error { return ForgetReportTx(tx, m.ID) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Raw(m.ID); err != ErrNotFound {
		t.Fatalf("evidence kept: %v", err)
	}
	if _, err := s.GetReport(m.ID); err != ErrNotFound {
		t.Fatalf("report kept: %v", err)
	}
	if _, err := s.OutboxMail(m.ID); err != ErrNotFound {
		t.Fatalf("rendered mail kept: %v", err)
	}
	if _, err := s.GetOutbox(m.ID); err != nil {
		t.Fatalf("outbox entry lost: %v", err)
	}
	// Retention removes a rendered message with its entry.
	if err := s.Commit(func(tx *bbolt.Tx) error { return PutOutboxMailTx(tx, m.ID, []byte("rendered")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sweep("x", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OutboxMail(m.ID); err != ErrNotFound {
		t.Fatalf("rendered mail outlived retention: %v", err)
	}
	// A rendered message without entry (left by an older binary) is pruned.
	orphan, _ := NewID()
	if err := s.Commit(func(tx *bbolt.Tx) error { return PutOutboxMailTx(tx, orphan, []byte("rendered")) }); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneOutboxMail(); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
}
