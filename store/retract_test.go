package store

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// complaint stores a report of channel about Message-ID mid from src with
// a pending outbox entry, and returns its id.
func complaint(t *testing.T, s *Store, channel, mid, src string) ID {
	t.Helper()
	m := msg(t, channel)
	m.Status = StatusConverted
	doc := fmt.Sprintf(`{"xarf_version":"4.2.0","source_identifier":%q,"message_id":%q,"evidence":[{"payload":"eA=="}]}`, src, mid)
	e := Entry{
		Message: m, Raw: []byte("x"),
		Report: &Report{ID: m.ID, Channel: channel, SourceIP: netip.MustParseAddr(src), Via: "smtp", XARF: []byte(doc)},
		Outbox: &OutboxEntry{ID: m.ID, Channel: channel, Status: OutboxPending, Created: m.Envelope.ReceivedAt},
	}
	if err := s.Put([]Entry{e}); err != nil {
		t.Fatal(err)
	}
	return m.ID
}

func TestRetractWithdrawsThePendingComplaint(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	other := complaint(t, s, "fbl", "<other@sender.example>", "198.51.100.7")
	target := complaint(t, s, "fbl", "<offer-1@sender.example>", "198.51.100.7")
	foreign := complaint(t, s, "fbl-b", "<offer-1@sender.example>", "198.51.100.7") // another provider's
	rid, _ := NewID()

	// A different source does not match.
	res, err := s.Retract(Retraction{ID: rid, Channel: "fbl", MessageID: "<offer-1@sender.example>", SourceIP: netip.MustParseAddr("203.0.113.1")}, now)
	if err != nil || res.Complaint != (ID{}) {
		t.Fatalf("other source matched: %+v %v", res, err)
	}
	res, err = s.Retract(Retraction{ID: rid, Channel: "fbl", MessageID: "<offer-1@sender.example>", SourceIP: netip.MustParseAddr("198.51.100.7")}, now)
	if err != nil || res.Complaint != target || !res.Withdrawn || res.Status != OutboxPending {
		t.Fatalf("retract = %+v, %v; want %s withdrawn", res, err, target)
	}
	e, _ := s.GetOutbox(target)
	if e.Status != OutboxWithdrawn || e.Reason == "" {
		t.Errorf("entry = %+v", e)
	}
	// Out of the due index: the reporter never sees it again.
	due, _, _ := s.DueOutbox(now.Add(time.Hour), 10)
	for _, d := range due {
		if d.ID == target {
			t.Errorf("withdrawn entry still due")
		}
	}
	if len(due) != 2 {
		t.Errorf("due = %d entries, want the 2 others", len(due))
	}
	for _, id := range []ID{other, foreign} {
		if e, _ := s.GetOutbox(id); e.Status != OutboxPending {
			t.Errorf("%s touched: %+v", id, e)
		}
	}
	// The report itself stays.
	if _, err := s.GetReport(target); err != nil {
		t.Errorf("report gone: %v", err)
	}
	// A second retraction finds it withdrawn already.
	res, err = s.Retract(Retraction{ID: rid, Channel: "fbl", MessageID: "<offer-1@sender.example>"}, now)
	if err != nil || res.Complaint != target || res.Withdrawn || res.Status != OutboxWithdrawn {
		t.Errorf("second retract = %+v %v", res, err)
	}
	if _, err := s.Retract(Retraction{Channel: "fbl"}, now); err != ErrNoMessageID {
		t.Errorf("no Message-ID: %v", err)
	}
}

func TestRetractLeavesSentAndUncountsDuplicates(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	sent := complaint(t, s, "fbl", "<a@x.example>", "198.51.100.7")
	s.updateOutbox(sent, func(_ *bbolt.Tx, e *OutboxEntry) error { e.Status = OutboxSent; return nil })
	res, err := s.Retract(Retraction{Channel: "fbl", MessageID: "<a@x.example>"}, now)
	if err != nil || res.Complaint != sent || res.Withdrawn || res.Status != OutboxSent {
		t.Fatalf("sent: %+v %v", res, err)
	}
	if e, _ := s.GetOutbox(sent); e.Status != OutboxSent {
		t.Errorf("sent entry changed: %+v", e)
	}

	primary := complaint(t, s, "fbl", "<b@x.example>", "198.51.100.8")
	dup := complaint(t, s, "fbl", "<b@x.example>", "198.51.100.8")
	s.updateOutbox(primary, func(_ *bbolt.Tx, e *OutboxEntry) error { e.Count = 2; return nil })
	s.updateOutbox(dup, func(_ *bbolt.Tx, e *OutboxEntry) error {
		e.Status, e.DuplicateOf = OutboxDuplicate, primary
		return nil
	})
	res, err = s.Retract(Retraction{Channel: "fbl", MessageID: "<b@x.example>"}, now)
	if err != nil || res.Complaint != dup || !res.Withdrawn {
		t.Fatalf("duplicate: %+v %v", res, err)
	}
	if p, _ := s.GetOutbox(primary); p.Count != 1 || p.Status != OutboxPending {
		t.Errorf("primary after its duplicate was withdrawn: %+v", p)
	}
	// The next retraction of the same message takes the primary.
	res, err = s.Retract(Retraction{Channel: "fbl", MessageID: "<b@x.example>"}, now)
	if err != nil || res.Complaint != primary || !res.Withdrawn {
		t.Fatalf("primary: %+v %v", res, err)
	}
}
