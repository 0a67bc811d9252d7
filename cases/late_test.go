package cases

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// idOf is a report id of arrival at.
func idOf(t *testing.T, at time.Time) store.ID {
	t.Helper()
	id, err := store.NewID()
	if err != nil {
		t.Fatal(err)
	}
	ms := uint64(at.UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id
}

// A complaint quarantined two hours ago (by an older parser, say) and
// reprocessed now keeps its id, far behind the worker's cursor and its
// look-back: the report still joins a case, once.
func TestReprocessedReportJoinsACase(t *testing.T) {
	e := setup(t, "", Options{})
	at := ts("2026-11-27T13:00:00Z")
	raw := strings.ReplaceAll(string(complaint("192.0.2.10", 0, at, 9)), "\n", "\r\n")
	old := idOf(t, time.Now().Add(-2*time.Hour))
	env := store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), MailFrom: "fbl@isp.example", Via: "smtp",
		Rcpts: []string{"fbl@cases.test"}}
	m := &store.Message{ID: old, Channel: "fbl", Size: len(raw), Status: store.StatusQuarantined, Reason: "an older parser", Envelope: env}
	if err := e.st.Put([]store.Entry{{Message: m, Raw: []byte(raw)}}); err != nil {
		t.Fatal(err)
	}
	e.complain(t, "fbl", "192.0.2.20", 1500, at, 1) // moves the cursor to now
	e.step(t)
	if cur, _ := e.st.CasesCursor(); store.IDTime(cur).Sub(store.IDTime(old)) < time.Hour {
		t.Fatalf("cursor %s is not past the quarantined message %s", cur, old)
	}
	if cs := e.cases(t); cs["subscriber:bob"] != nil || cs["subscriber:carol"] == nil {
		t.Fatalf("cases before the reprocess: %v", keys(cs))
	}

	res, err := e.in.Reprocess(old)
	if err != nil || !res.Report {
		t.Fatalf("reprocess: %+v %v", res, err)
	}
	e.step(t)
	bob := e.cases(t)["subscriber:bob"]
	if bob == nil || len(bob.Reports) != 1 || bob.Reports[0].ID != old || bob.Complaints != 1 {
		t.Fatalf("the reprocessed report did not join a case: %+v", bob)
	}
	// Once: the queue is drained, a second pass and a restart add nothing.
	if _, ids, err := e.st.ScanLateReports(10, func(*store.Report) bool { return true }); err != nil || len(ids) != 0 {
		t.Errorf("late queue after the pass: %v %v", ids, err)
	}
	e.step(t)
	m2, err := New(e.cfg, e.st, Options{Now: e.m.opt.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m2
	e.step(t)
	if bob := e.cases(t)["subscriber:bob"]; bob.Complaints != 1 || len(bob.Reports) != 1 {
		t.Errorf("added twice: %+v", bob)
	}
}

// A reprocessed report that no case wants (an address outside
// own_networks) leaves the queue all the same.
func TestReprocessedForeignReportLeavesTheQueue(t *testing.T) {
	e := setup(t, "", Options{})
	raw := strings.ReplaceAll(string(complaint("198.51.100.1", 0, ts("2026-11-27T13:00:00Z"), 9)), "\n", "\r\n")
	old := idOf(t, time.Now().Add(-2*time.Hour))
	env := store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), MailFrom: "fbl@isp.example", Via: "smtp",
		Rcpts: []string{"fbl@cases.test"}}
	m := &store.Message{ID: old, Channel: "fbl", Size: len(raw), Status: store.StatusQuarantined, Reason: "old", Envelope: env}
	if err := e.st.Put([]store.Entry{{Message: m, Raw: []byte(raw)}}); err != nil {
		t.Fatal(err)
	}
	if res, err := e.in.Reprocess(old); err != nil || !res.Report {
		t.Fatalf("reprocess: %+v %v", res, err)
	}
	if _, ids, _ := e.st.ScanLateReports(10, func(*store.Report) bool { return true }); len(ids) != 1 || ids[0] != old {
		t.Fatalf("queued: %v", ids)
	}
	e.step(t)
	if _, ids, _ := e.st.ScanLateReports(10, func(*store.Report) bool { return true }); len(ids) != 0 {
		t.Errorf("still queued: %v", ids)
	}
	if cs := e.cases(t); len(cs) != 0 {
		t.Errorf("cases: %v", keys(cs))
	}
}
