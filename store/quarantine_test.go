package store

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func quarantined(t *testing.T, s *Store, channel string) (*Message, []byte) {
	t.Helper()
	m := msg(t, channel)
	m.Status, m.Reason = StatusQuarantined, "xarf: no origin address"
	raw := []byte("Subject: q\r\n\r\nbody " + m.ID.String() + "\r\n")
	if err := s.Put([]Entry{{Message: m, Raw: raw}}); err != nil {
		t.Fatal(err)
	}
	return m, raw
}

func TestDeleteQuarantined(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	m, _ := quarantined(t, s, "trap")
	keep, _ := quarantined(t, s, "trap")
	conv := msg(t, "trap")
	conv.Status = StatusConverted
	if err := s.Put([]Entry{{Message: conv, Raw: []byte("x"), Report: &Report{ID: conv.ID, Channel: "trap", XARF: []byte(`{}`),
		SourceIP: netip.MustParseAddr("203.0.113.5")}}}); err != nil {
		t.Fatal(err)
	}
	hour := hourStart(IDTime(m.ID))
	counted, _ := s.HourlyStats(hour, hour.Add(time.Hour))

	if err := s.DeleteQuarantined(m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("record left: %v", err)
	}
	if _, _, _, err := s.Quarantined(m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("quarantine entry left: %v", err)
	}
	st, _ := s.ChannelStats([]string{"trap"})
	if st[0].Records != 2 {
		t.Errorf("channel index holds %d records, want 2", st[0].Records)
	}
	if q, _ := s.QuarantineEntries(); len(q) != 1 || q[0].Key != keep.ID.String() {
		t.Errorf("quarantine = %+v", q)
	}
	if again, _ := s.HourlyStats(hour, hour.Add(time.Hour)); len(again) != len(counted) || again[0] != counted[0] {
		t.Errorf("counters changed: %+v, were %+v", again, counted)
	}

	if err := s.DeleteQuarantined(m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted twice: %v", err)
	}
	if err := s.DeleteQuarantined(conv.ID); !errors.Is(err, ErrNotQuarantined) {
		t.Errorf("a report: %v", err)
	}
	if _, err := s.GetReport(conv.ID); err != nil {
		t.Errorf("the report was touched: %v", err)
	}

	// An entry Recover made of an unreadable record is not a message.
	bad, _ := NewID()
	if err := s.Commit(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).Put(bad[:], []byte("\x07garbage"))
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Recover(); n != 1 || err != nil {
		t.Fatalf("recover: %d %v", n, err)
	}
	if err := s.DeleteQuarantined(bad); !errors.Is(err, ErrUnreadableQuarantine) {
		t.Errorf("unreadable record: %v", err)
	}
	s.Close()
	rep, err := Check(dir, time.Second)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check after delete: %v %q", err, rep.Problems)
	}
}

func TestReplaceQuarantined(t *testing.T) {
	s := open(t, t.TempDir())
	m, raw := quarantined(t, s, "trap")

	// Still quarantined: the new reason, nothing else.
	again := *m
	again.Reason = "xarf: no origin address: every Received hop is a trusted relay"
	if err := s.ReplaceQuarantined(Entry{Message: &again, Raw: raw}, time.Now()); err != nil {
		t.Fatal(err)
	}
	q, got, _, err := s.Quarantined(m.ID)
	if err != nil || q.Reason != again.Reason || got.Reason != again.Reason || !q.At.Equal(m.Envelope.ReceivedAt) {
		t.Fatalf("still quarantined: %+v %+v %v", q, got, err)
	}

	// Other bytes than the stored ones are refused: the evidence is
	// never replaced through here.
	conv := *m
	conv.Status, conv.Reason = StatusConverted, ""
	rep := &Report{ID: m.ID, Channel: "trap", SourceIP: netip.MustParseAddr("203.0.113.77"), XARF: []byte(`{"n":1}`)}
	ob := &OutboxEntry{ID: m.ID, Channel: "trap", Status: OutboxPending, Created: time.Now()}
	other := append(bytes.Clone(raw), "victim@trap.example"...)
	if err := s.ReplaceQuarantined(Entry{Message: &conv, Raw: other, Report: rep, Outbox: ob}, time.Now()); err == nil {
		t.Fatal("other bytes accepted")
	}
	wrong := conv
	wrong.Channel = "fbl"
	if err := s.ReplaceQuarantined(Entry{Message: &wrong, Raw: raw, Report: &Report{ID: m.ID, Channel: "fbl", XARF: []byte(`{}`)}}, time.Now()); err == nil {
		t.Fatal("another channel accepted")
	}

	now := time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC)
	if err := s.ReplaceQuarantined(Entry{Message: &conv, Raw: raw, Report: rep, Outbox: ob}, now); err != nil {
		t.Fatal(err)
	}
	if r, err := s.GetReport(m.ID); err != nil || string(r.XARF) != `{"n":1}` {
		t.Fatalf("report: %v", err)
	}
	if rs, _, _ := s.Reports(Query{SourceIP: rep.SourceIP}); len(rs) != 1 {
		t.Errorf("not indexed by source: %d", len(rs))
	}
	if due := dueIDs(t, s, time.Now().Add(time.Second)); !due[m.ID] {
		t.Error("outbox entry not due")
	}
	if q, _ := s.QuarantineEntries(); len(q) != 0 {
		t.Errorf("quarantine = %+v", q)
	}
	hs, _ := s.HourlyStats(now.Truncate(time.Hour), now.Add(time.Hour))
	if len(hs) != 1 || hs[0].Reports != 1 || hs[0].Channel != "trap" {
		t.Errorf("the report is not counted when it was made: %+v", hs)
	}
	if err := s.ReplaceQuarantined(Entry{Message: &conv, Raw: raw, Report: rep}, now); !errors.Is(err, ErrNotQuarantined) {
		t.Errorf("replaced twice: %v", err)
	}
}

// Retention takes a quarantined message's quarantine entry with its
// record, and an entry Recover made of an unreadable record (which holds
// that record's bytes) once its channel's retention has passed.
func TestSweepTakesQuarantineEntries(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	old := msgAt(t, "trap", time.Now().Add(-48*time.Hour))
	old.Status, old.Reason = StatusQuarantined, "x"
	unreadable := msgAt(t, "trap", time.Now().Add(-47*time.Hour))
	fresh, _ := quarantined(t, s, "trap")
	if err := s.Put([]Entry{{Message: old, Raw: []byte("x")}, {Message: unreadable, Raw: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).Put(unreadable.ID[:], []byte("\x07garbage"))
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Recover(); n != 1 || err != nil {
		t.Fatalf("recover: %d %v", n, err)
	}
	if n, err := s.Sweep("trap", time.Now().Add(-time.Hour)); n != 2 || err != nil {
		t.Fatalf("swept %d, %v", n, err)
	}
	if q, _ := s.QuarantineEntries(); len(q) != 1 || q[0].Key != fresh.ID.String() {
		t.Fatalf("quarantine after retention: %+v", q)
	}
	s.Close()
	if rep, err := Check(dir, time.Second); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check: %v %q", err, rep.Problems)
	}
}
