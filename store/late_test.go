package store

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// reprocessed replaces quarantined message m (bytes raw) by a report.
func reprocessed(t *testing.T, s *Store, m *Message, raw []byte) {
	t.Helper()
	conv := *m
	conv.Status, conv.Reason = StatusConverted, ""
	rep := &Report{ID: m.ID, Channel: m.Channel, SourceIP: netip.MustParseAddr("203.0.113.77"), XARF: []byte(`{}`)}
	if err := s.ReplaceQuarantined(Entry{Message: &conv, Raw: raw, Report: rep}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func lateOf(t *testing.T, s *Store) (intel, cases []ID) {
	t.Helper()
	intel, err := s.IntelLate(100)
	if err != nil {
		t.Fatal(err)
	}
	if _, cases, err = s.ScanLateReports(100, func(*Report) bool { return true }); err != nil {
		t.Fatal(err)
	}
	return intel, cases
}

// A late report newer than the intel cursor leaves its queue when mined
// without moving the cursor past the reports between.
func TestIntelLateKeepsTheCursor(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now()
	report := func(at time.Time) ID {
		id := idAt(t, at)
		if err := s.Put([]Entry{{Report: &Report{ID: id, Channel: "trap", XARF: []byte(`{}`)}}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := report(now.Add(-time.Hour))
	if _, err := s.IntelRecord([]IntelUpdate{{Report: a}}); err != nil {
		t.Fatal(err)
	}
	b := report(now.Add(-30 * time.Minute)) // not mined yet
	m, raw := quarantined(t, s, "trap")
	reprocessed(t, s, m, raw)
	if in, cs := lateOf(t, s); !slices.Equal(in, []ID{m.ID}) || !slices.Equal(cs, []ID{m.ID}) {
		t.Fatalf("queued: intel %v cases %v", in, cs)
	}
	if _, err := s.IntelRecord([]IntelUpdate{{Report: m.ID}}); err != nil {
		t.Fatal(err)
	}
	if in, _ := lateOf(t, s); len(in) != 0 {
		t.Errorf("still queued for intel: %v", in)
	}
	ids, err := s.IntelPending([]string{"trap"}, 10, false)
	if err != nil || !slices.Contains(ids, b) {
		t.Errorf("the report between the cursor and the late one is lost: %v %v", ids, err)
	}
	if slices.Contains(ids, m.ID) {
		t.Error("the late report is pending again")
	}
}

// Deleting a record deletes it from both queues, so a queue that no
// worker drains does not outgrow the store.
func TestDeletedRecordLeavesTheLateQueues(t *testing.T) {
	s := open(t, t.TempDir())
	m, raw := quarantined(t, s, "trap")
	reprocessed(t, s, m, raw)
	if in, cs := lateOf(t, s); len(in) != 1 || len(cs) != 1 {
		t.Fatalf("queued: %v %v", in, cs)
	}
	if err := s.Commit(func(tx *bbolt.Tx) error { return ForgetReportTx(tx, m.ID) }); err != nil {
		t.Fatal(err)
	}
	if in, cs := lateOf(t, s); len(in) != 0 || len(cs) != 0 {
		t.Errorf("queued after the record was deleted: %v %v", in, cs)
	}
}
