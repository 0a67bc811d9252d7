package store

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// seedReports stores n reports, one per minute going back from now,
// alternating channels a/b and three source IPs (one IPv6); every third
// carries a message too.
func seedReports(t *testing.T, s *Store, n int) []Report {
	t.Helper()
	ips := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("198.51.100.3")}
	now := time.Now()
	var all []Report
	var entries []Entry
	for i := 0; i < n; i++ {
		r := Report{
			ID:       idAt(t, now.Add(-time.Duration(i)*time.Minute)),
			Channel:  []string{"a", "b"}[i%2],
			SourceIP: ips[i%3],
			Via:      "smtp",
			XARF:     json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
		}
		e := Entry{Report: &r}
		if i%3 == 0 {
			m := msg(t, r.Channel)
			m.ID = r.ID
			e.Message, e.Raw = m, []byte("evidence")
		}
		entries = append(entries, e)
		all = append(all, r)
	}
	if err := s.Put(entries); err != nil {
		t.Fatal(err)
	}
	return all // newest first
}

func ids(rs []Report) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID.String()
	}
	return out
}

// pages follows cursors through every page of q.
func pages(t *testing.T, s *Store, q Query) []Report {
	t.Helper()
	var all []Report
	for i := 0; ; i++ {
		page, next, err := s.Reports(q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > q.Limit {
			t.Fatalf("page of %d over limit %d", len(page), q.Limit)
		}
		all = append(all, page...)
		if next == (ID{}) {
			return all
		}
		q.Before = next
		if i > 100 {
			t.Fatal("cursor does not advance")
		}
	}
}

func TestReportQueries(t *testing.T) {
	s := open(t, t.TempDir())
	all := seedReports(t, s, 60)
	filter := func(keep func(i int, r Report) bool) []Report {
		var out []Report
		for i, r := range all {
			if keep(i, r) {
				out = append(out, r)
			}
		}
		return out
	}
	now := time.Now()
	cases := []struct {
		name string
		q    Query
		want []Report
	}{
		{"all", Query{Limit: 7}, all},
		{"channel", Query{Channel: "b", Limit: 4}, filter(func(_ int, r Report) bool { return r.Channel == "b" })},
		{"ipv6 source", Query{SourceIP: netip.MustParseAddr("2001:db8::7"), Limit: 5}, filter(func(i int, _ Report) bool { return i%3 == 1 })},
		{"ipv4-mapped source", Query{SourceIP: netip.MustParseAddr("::ffff:192.0.2.1"), Limit: 50}, filter(func(i int, _ Report) bool { return i%3 == 0 })},
		{"source and channel", Query{SourceIP: netip.MustParseAddr("192.0.2.1"), Channel: "a", Limit: 3}, filter(func(i int, _ Report) bool { return i%6 == 0 })},
		{"since", Query{Since: now.Add(-10*time.Minute - 30*time.Second), Limit: 4}, all[:11]},
		{"until", Query{Until: now.Add(-49*time.Minute - 30*time.Second), Limit: 4}, all[50:]},
		{"window and channel", Query{Channel: "a", Since: now.Add(-20*time.Minute - 30*time.Second), Until: now.Add(-9*time.Minute - 30*time.Second), Limit: 2},
			filter(func(i int, r Report) bool { return i >= 10 && i <= 20 && r.Channel == "a" })},
		{"unknown channel", Query{Channel: "zz", Limit: 5}, nil},
		{"unknown source", Query{SourceIP: netip.MustParseAddr("203.0.113.9"), Limit: 5}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := pages(t, s, tc.q)
			if !slices.Equal(ids(got), ids(tc.want)) {
				t.Errorf("got %d reports %v\nwant %d %v", len(got), ids(got), len(tc.want), ids(tc.want))
			}
		})
	}
	r, err := s.GetReport(all[5].ID)
	if err != nil || string(r.XARF) != `{"n":5}` || r.SourceIP != all[5].SourceIP {
		t.Errorf("GetReport = %+v, %v", r, err)
	}
}

func TestSweepRemovesReportsAndEvidenceTogether(t *testing.T) {
	s := open(t, t.TempDir())
	all := seedReports(t, s, 30)
	n, err := s.Sweep("a", time.Now().Add(-15*time.Minute-30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// Channel a holds the even minutes; 16..28 are older than the cutoff.
	if n != 7 {
		t.Errorf("swept %d, want 7", n)
	}
	for i, r := range all {
		_, err := s.GetReport(r.ID)
		gone := r.Channel == "a" && i > 15
		if gone != (err == ErrNotFound) {
			t.Errorf("report %d (channel %s): err %v, want gone=%v", i, r.Channel, err, gone)
		}
		if gone {
			if _, err := s.Raw(r.ID); err != ErrNotFound {
				t.Errorf("evidence of swept report %d: %v", i, err)
			}
		}
	}
	// The source index forgot them too.
	got := pages(t, s, Query{SourceIP: all[0].SourceIP, Channel: "a", Limit: 100})
	for _, r := range got {
		if _, err := s.GetReport(r.ID); err != nil {
			t.Errorf("index returned swept report %s", r.ID)
		}
	}
	if len(got) != 3 { // i = 0, 6, 12
		t.Errorf("source index has %d of channel a, want 3", len(got))
	}
}

func TestOutboxAndBackup(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	all := seedReports(t, s, 3)
	var entries []Entry
	for i, r := range all {
		m := msg(t, r.Channel)
		id := idAt(t, time.Now().Add(time.Duration(i)*time.Second))
		m.ID = id
		rep := r
		rep.ID = id
		entries = append(entries, Entry{Message: m, Raw: []byte("e"), Report: &rep,
			Outbox: &OutboxEntry{ID: id, Channel: r.Channel, Status: []OutboxStatus{OutboxPending, OutboxDryRun, OutboxPending}[i], Created: time.Now()}})
	}
	if err := s.Put(entries); err != nil {
		t.Fatal(err)
	}
	pending, next, err := s.Outbox(OutboxPending, ID{}, 1)
	if err != nil || len(pending) != 1 || pending[0].ID != entries[2].Message.ID || next == (ID{}) {
		t.Fatalf("first pending page = %+v next %v, %v", pending, next, err)
	}
	pending, next, _ = s.Outbox(OutboxPending, next, 1)
	if len(pending) != 1 || pending[0].ID != entries[0].Message.ID || next != (ID{}) {
		t.Fatalf("second pending page = %+v next %v", pending, next)
	}
	if n, _ := s.OutboxDepth(); n != 2 {
		t.Errorf("depth %d, want 2", n)
	}

	// A hot backup opens as a database with the same content.
	bdir := t.TempDir()
	f, err := os.Create(filepath.Join(bdir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Backup(f); err != nil || n == 0 {
		t.Fatalf("backup: %d, %v", n, err)
	}
	f.Close()
	b := open(t, bdir)
	got, _, err := b.Reports(Query{Limit: 100})
	if err != nil || len(got) != 6 {
		t.Fatalf("backup holds %d reports, %v", len(got), err)
	}
	if d, _ := b.OutboxDepth(); d != 2 {
		t.Errorf("backup outbox depth %d", d)
	}
}

// TestSweepForgetsOutboxState: retention removes a report's outbox entry
// with its due-index key and its rendered message, which embeds the
// evidence and must not outlive it.
func TestSweepForgetsOutboxState(t *testing.T) {
	s := open(t, t.TempDir())
	old := time.Now().Add(-48 * time.Hour)
	id := idAt(t, old)
	m := msg(t, "trap")
	m.ID = id
	r := &Report{ID: id, Channel: "trap", Via: "smtp", XARF: json.RawMessage(`{}`)}
	if err := s.Put([]Entry{{Message: m, Raw: []byte("evidence"), Report: r,
		Outbox: &OutboxEntry{ID: id, Channel: "trap", Status: OutboxPending, Created: old}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(func(tx *bbolt.Tx) error { return PutOutboxMailTx(tx, id, []byte("rendered with evidence")) }); err != nil {
		t.Fatal(err)
	}
	if due, _, err := s.DueOutbox(time.Now(), 10); err != nil || len(due) != 1 {
		t.Fatalf("due before sweep: %v %v", due, err)
	}
	if n, err := s.Sweep("trap", time.Now().Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if _, err := s.OutboxMail(id); err == nil {
		t.Error("rendered message outlived its report")
	}
	if _, err := s.GetOutbox(id); err == nil {
		t.Error("outbox entry outlived its report")
	}
	err := s.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketOutboxDue).Cursor().First(); k != nil {
			t.Errorf("due index still holds %x", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
