package store

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

func attempts(t *testing.T, s *Store, id ID) AttemptHistory {
	t.Helper()
	h, err := s.AttemptsOf(id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func outcomes(h AttemptHistory) string {
	var out []string
	for _, a := range h.Attempts {
		out = append(out, string(a.Outcome))
	}
	return strings.Join(out, ",")
}

// A delivery's transactions and the decisions around them become rows,
// each in the commit that records its outcome, by this node.
func TestAttemptHistoryRecordsOutcomes(t *testing.T) {
	var commits atomic.Int64
	// FaultCommit runs in every write transaction before its commit
	// returns (OnCommit runs after the waiters are told); no health probe
	// may commit in between.
	s, err := Open(t.TempDir(), Options{Node: "mx1", ProbeInterval: time.Hour, FaultCommit: func() error { commits.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	id := queued(t, s, now)
	if h := attempts(t, s, id); len(h.Attempts) != 0 || h.Attempts == nil {
		t.Fatalf("new entry: %+v, want an empty (non-nil) history", h)
	}
	if _, err := s.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.BeginDelivery(id, now, time.Minute, 10, nil); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	before := commits.Load()
	if _, err := s.RecordTransaction(id, now, Transaction{Attempt: &Attempt{MX: "mx.desk.example", IP: ip, Outcome: AttemptPermFail,
		Code: 550, EnhancedCode: "5.7.1", Reply: "550 5.7.1 go away"}}); err != nil {
		t.Fatal(err)
	}
	if n := commits.Load() - before; n != 1 {
		t.Errorf("recording a transaction with its row took %d commits, want 1", n)
	}
	if _, err := s.Retry(id, now, now, "550 5.7.1 go away", "temporary", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(id, now.Add(time.Second), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Retry(id, now.Add(time.Second), now, "contact lookup: timeout", "temporary", &Attempt{Outcome: AttemptTempFail, Detail: "contact lookup: timeout"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(id, now.Add(2*time.Second), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTransaction(id, now.Add(2*time.Second), Transaction{Accepted: []string{"abuse@desk.example"}, Reply: "250 ok",
		Attempt: &Attempt{MX: "mx.desk.example", IP: ip, Outcome: AttemptSent, Code: 250, Reply: "250 ok"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSent(id, now.Add(2*time.Second), "", false); err != nil {
		t.Fatal(err)
	}
	h := attempts(t, s, id)
	if got := outcomes(h); got != "perm-failure,temp-failure,sent" {
		t.Fatalf("outcomes %q", got)
	}
	a := h.Attempts[0]
	if a.Seq != 0 || a.Node != "mx1" || a.MX != "mx.desk.example" || a.IP != ip || a.Code != 550 || a.EnhancedCode != "5.7.1" ||
		a.Reply != "550 5.7.1 go away" || !a.At.Equal(now) {
		t.Errorf("first row %+v", a)
	}
	if h.Attempts[1].Detail != "contact lookup: timeout" || h.Attempts[2].Seq != 2 || h.Dropped != 0 {
		t.Errorf("history %+v", h)
	}

	// Decisions: a batch's withhold and dry run, an operator's requeue
	// and cancel, a rate limit.
	ids := []ID{queued(t, s, now), queued(t, s, now), queued(t, s, now)}
	if _, err := s.ClaimBatch(ids, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Settle([][]Step{{WithholdStep(ids[0], now, "private source", netip.Addr{})}, {DryRunStep(ids[1], now, nil, "dry")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Requeue(ids[0], now, "try again"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ids[0], now, "not this one"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitRate(ids[2], now, 1, RateLimit{Contact: "abuse@desk.example", Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"withheld,requeued,cancelled", "dry-run", "rate-limited"} {
		if got := outcomes(attempts(t, s, ids[i])); got != want {
			t.Errorf("entry %d: outcomes %q, want %q", i, got, want)
		}
	}
	if d := attempts(t, s, ids[0]).Attempts[0].Detail; d != "private source" {
		t.Errorf("withheld row's detail %q", d)
	}
}

// Only the newest MaxAttemptsKept rows stay, whatever the neighbouring
// entries hold; the rest are counted.
func TestAttemptHistoryBounded(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	a, b, c := queued(t, s, now), queued(t, s, now), queued(t, s, now)
	add := func(id ID, n int) {
		t.Helper()
		if err := s.Commit(func(tx *bbolt.Tx) error {
			for i := range n {
				if err := addAttemptTx(tx, id, s.node, Attempt{At: now, Outcome: AttemptTempFail, Detail: fmt.Sprintf("try %d", i)}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	add(a, 3)
	add(c, 2)
	add(b, MaxAttemptsKept+8) // between two entries with rows
	add(c, MaxAttemptsKept+1) // the last entry in the bucket
	add(a, 1)
	h := attempts(t, s, b)
	if len(h.Attempts) != MaxAttemptsKept || h.Dropped != 8 || h.Attempts[0].Seq != 8 ||
		h.Attempts[MaxAttemptsKept-1].Detail != fmt.Sprintf("try %d", MaxAttemptsKept+7) {
		t.Errorf("b: %d rows, dropped %d, first seq %d", len(h.Attempts), h.Dropped, h.Attempts[0].Seq)
	}
	if h := attempts(t, s, c); len(h.Attempts) != MaxAttemptsKept || h.Dropped != 3 || h.Attempts[MaxAttemptsKept-1].Seq != MaxAttemptsKept+2 {
		t.Errorf("c: %d rows, dropped %d", len(h.Attempts), h.Dropped)
	}
	if h := attempts(t, s, a); len(h.Attempts) != 4 || h.Dropped != 0 || h.Attempts[3].Seq != 3 {
		t.Errorf("a: %+v", h)
	}
}

// Every path that deletes an entry deletes its rows in the same
// transaction.
func TestAttemptHistoryGoesWithEntry(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	old := idAt(t, now.Add(-48*time.Hour))
	m := msg(t, "x")
	m.ID = old
	if err := s.Put([]Entry{{Message: m, Raw: []byte("x"), Report: &Report{ID: old, Channel: "x", XARF: []byte(`{}`)},
		Outbox: &OutboxEntry{ID: old, Channel: "x", Status: OutboxPending, Created: now}}}); err != nil {
		t.Fatal(err)
	}
	keep := queued(t, s, now)
	for _, id := range []ID{old, keep} {
		if _, err := s.Claim(id, now, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Withhold(id, now, "x", netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Sweep("x", now.Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	rows := func(id ID) int {
		n := 0
		_ = s.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketOutboxAttempts).Cursor()
			for k, _ := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]); k, _ = c.Next() {
				n++
			}
			return nil
		})
		return n
	}
	if n := rows(old); n != 0 {
		t.Errorf("%d rows of a swept entry left", n)
	}
	if n := rows(keep); n != 1 {
		t.Errorf("%d rows of a kept entry, want 1", n)
	}
}

// A desk's reply is kept bounded and free of control characters.
func TestAttemptTextCleaned(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	id := queued(t, s, now)
	hostile := "550 5.7.1 no\r\nX-Injected: yes\x1b[31m red \u202egnp.exe\u0000" + strings.Repeat("é", 2000)
	if _, err := s.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordTransaction(id, now, Transaction{Attempt: &Attempt{MX: "mx\n.example", Outcome: AttemptPermFail, Code: 5500, Reply: hostile, Detail: hostile}}); err != nil {
		t.Fatal(err)
	}
	a := attempts(t, s, id).Attempts[0]
	for name, v := range map[string]string{"reply": a.Reply, "detail": a.Detail, "mx": a.MX} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\u202e' }) || !utf8.ValidString(v) {
			t.Errorf("%s holds control characters: %q", name, v)
		}
	}
	if len(a.Reply) > MaxAttemptReply || len(a.Detail) > MaxAttemptDetail || !strings.HasPrefix(a.Reply, "550 5.7.1 no X-Injected: yes [31m red gnp.exe") {
		t.Errorf("reply %d bytes: %.80q", len(a.Reply), a.Reply)
	}
	if a.MX != "mx .example" || a.Code != 0 {
		t.Errorf("mx %q code %d", a.MX, a.Code)
	}
}

// A store of schema 4 gets the bucket; its entries have empty histories
// and take new rows.
func TestMigrateToAttemptHistory(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Migrations: migrations[:4]})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	id := queued(t, s, now)
	if err := s.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketOutboxAttempts) != nil {
			return fmt.Errorf("schema 4 has %s", bucketOutboxAttempts)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if v, _ := s.Schema(); v != 5 || s.FoundSchema() != 4 {
		t.Fatalf("schema %d, found %d", v, s.FoundSchema())
	}
	if h := attempts(t, s, id); len(h.Attempts) != 0 {
		t.Errorf("migrated entry has %d rows", len(h.Attempts))
	}
	if _, err := s.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DryRun(id, now, nil, "dry"); err != nil {
		t.Fatal(err)
	}
	if got := outcomes(attempts(t, s, id)); got != "dry-run" {
		t.Errorf("outcomes %q", got)
	}
	s.Close()
	if rep, err := Check(dir, time.Second); err != nil || len(rep.Problems) > 0 {
		t.Errorf("check: %v %+v", err, rep)
	}
}

// check-store finds rows without entry, malformed keys and values.
func TestCheckFindsBadAttemptRows(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC()
	id := queued(t, s, now)
	if _, err := s.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Withhold(id, now, "x", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	ghost := idAt(t, now)
	if err := s.Commit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketOutboxAttempts)
		if err := b.Put(attemptKey(ghost, 0), []byte(`{}`)); err != nil {
			return err
		}
		if err := b.Put(attemptKey(id, 7), []byte(`{not json`)); err != nil {
			return err
		}
		return b.Put([]byte("short"), []byte(`{}`))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	rep, err := Check(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"rows of outbox entry " + ghost.String() + ", which does not exist", "row 7 of outbox entry " + id.String() + " is not valid JSON", "malformed key 73686f7274"} {
		if !strings.Contains(got, want) {
			t.Errorf("check lacks %q:\n%s", want, got)
		}
	}
	if len(rep.Problems) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(rep.Problems), got)
	}
}

// cleanText never returns control characters, invalid UTF-8 or more than
// n bytes, whatever a desk sends.
func FuzzCleanText(f *testing.F) {
	f.Add("550 5.7.1 no\r\nX: y\x1b[0m\u202e", 16)
	f.Add(strings.Repeat("é", 300), 7)
	f.Add("\xff\xfe ok", 512)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = max(1, n%1024)
		out := cleanText(s, n)
		if len(out) > n || !utf8.ValidString(out) || strings.ContainsFunc(out, func(r rune) bool {
			return r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u202e' || r == utf8.RuneError
		}) || strings.HasPrefix(out, " ") || strings.HasSuffix(out, " ") {
			t.Fatalf("cleanText(%q, %d) = %q", s, n, out)
		}
	})
}

// The row and the outcome are one transaction: when the row cannot be
// written, the outcome is not recorded either.
func TestAttemptRowAndOutcomeAtomic(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	id := queued(t, s, now)
	if _, err := s.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketOutboxAttempts).Put(attemptKey(id, math.MaxUint32), []byte(`{}`))
	}); err != nil {
		t.Fatal(err)
	}
	_, err := s.RecordTransaction(id, now, Transaction{Accepted: []string{"abuse@desk.example"}, Reply: "250 ok",
		Attempt: &Attempt{Outcome: AttemptSent, Code: 250}})
	if err == nil || !strings.Contains(err.Error(), "sequence exhausted") {
		t.Fatalf("recording with a full history: %v", err)
	}
	e, err := s.GetOutbox(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Delivered) != 0 || e.Reply != "" || e.Status != OutboxSending {
		t.Errorf("the outcome was recorded without its row: %+v", e)
	}
}
