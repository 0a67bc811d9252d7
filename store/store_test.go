package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func msg(t testing.TB, channel string) *Message {
	t.Helper()
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	return &Message{ID: id, Channel: channel, Status: StatusReceived, Envelope: Envelope{
		PeerIP: netip.MustParseAddr("192.0.2.7"), PeerPort: 4242, MailFrom: "a@origin.example",
		Rcpts: []string{"x@trap.example"}, ReceivedAt: time.Now().UTC().Truncate(time.Millisecond), Via: "smtp",
	}}
}

func TestPutAndRead(t *testing.T) {
	s := open(t, t.TempDir())
	m := msg(t, "trap")
	raw := []byte("Subject: x\r\n\r\n\x00\xff binary")
	if err := s.PutMessages([]*Message{m}, [][]byte{raw}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Message(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Channel != "trap" || got.Envelope.PeerIP != m.Envelope.PeerIP || got.Envelope.PeerPort != 4242 ||
		!got.Envelope.ReceivedAt.Equal(m.Envelope.ReceivedAt) || got.Envelope.Rcpts[0] != "x@trap.example" {
		t.Errorf("got %+v, want %+v", got, m)
	}
	b, err := s.Raw(m.ID)
	if err != nil || !bytes.Equal(b, raw) {
		t.Errorf("raw = %q, %v", b, err)
	}
	other, _ := NewID()
	if _, err := s.Message(other); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

func TestIDsAreTimeOrdered(t *testing.T) {
	prev, _ := NewID()
	for i := 0; i < 1000; i++ {
		id, err := NewID()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Compare(id[:], prev[:]) <= 0 {
			t.Fatalf("id %s not after %s", id, prev)
		}
		prev = id
	}
	if d := time.Since(IDTime(prev)); d < 0 || d > time.Minute {
		t.Errorf("IDTime is %v away from now", d)
	}
}

// TestGroupCommitConcurrent: many writers at once all get their own
// record durable, and one failing operation does not fail its batch.
func TestGroupCommitConcurrent(t *testing.T) {
	dir := t.TempDir()
	var (
		mu      sync.Mutex
		hookOps []int
		hookErr error
	)
	s, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond, OnCommit: func(ops int, took time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		hookOps = append(hookOps, ops)
		if ops < 1 || took <= 0 {
			hookErr = fmt.Errorf("OnCommit(%d, %v)", ops, took)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	ids := make([]ID, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Go(func() {
			if i%10 == 3 {
				errs[i] = s.Commit(func(*bbolt.Tx) error { return fmt.Errorf("planted failure %d", i) })
				return
			}
			m := msg(t, "fbl")
			ids[i] = m.ID
			errs[i] = s.PutMessages([]*Message{m}, [][]byte{[]byte(fmt.Sprintf("body %d", i))})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%10 == 3 {
			if err == nil || !strings.Contains(err.Error(), fmt.Sprint("planted failure ", i)) {
				t.Errorf("op %d: want its own planted error, got %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("op %d: %v", i, err)
		}
	}
	s.Close() // waits for the committer, and with it the last OnCommit
	// OnCommit saw each durable transaction once, with the operations it
	// held; the planted failures were committed in none.
	sum := 0
	for _, o := range hookOps {
		sum += o
	}
	if hookErr != nil || len(hookOps) == 0 || sum != n-n/10 {
		t.Errorf("OnCommit: %d calls for %d operations (%v); want %d operations", len(hookOps), sum, hookErr, n-n/10)
	}
	s = open(t, dir)
	for i, id := range ids {
		if i%10 == 3 {
			continue
		}
		b, err := s.Raw(id)
		if err != nil || string(b) != fmt.Sprintf("body %d", i) {
			t.Errorf("record %d after reopen: %q %v", i, b, err)
		}
	}
}

func TestCommitAfterClose(t *testing.T) {
	s := open(t, t.TempDir())
	s.Close()
	if err := s.PutMessages([]*Message{msg(t, "x")}, [][]byte{nil}); !errors.Is(err, ErrClosed) {
		t.Errorf("got %v, want ErrClosed", err)
	}
}

func TestDatabaseInUse(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	_, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v", err)
	}
}

func TestSchemaMigration(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if v, _ := s.Schema(); v != SchemaVersion {
		t.Fatalf("new database has schema %d, want %d", v, SchemaVersion)
	}
	m := msg(t, "fbl")
	if err := s.PutMessages([]*Message{m}, [][]byte{[]byte("x")}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A binary with one more migration upgrades the file once, keeping data.
	ran := 0
	next := append(append([]Migration(nil), migrations...), Migration{To: SchemaVersion + 1, Run: func(tx *bbolt.Tx) error {
		ran++
		_, err := tx.CreateBucket([]byte("v2"))
		return err
	}})
	for i := 0; i < 2; i++ {
		s2, err := Open(dir, Options{Migrations: next})
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := s2.Schema(); v != SchemaVersion+1 {
			t.Errorf("schema after migration = %d", v)
		}
		if want := []uint64{SchemaVersion, SchemaVersion + 1}[i]; s2.FoundSchema() != want {
			t.Errorf("open %d found schema %d, want %d", i, s2.FoundSchema(), want)
		}
		if _, err := s2.Raw(m.ID); err != nil {
			t.Errorf("data lost in migration: %v", err)
		}
		s2.Close()
	}
	if ran != 1 {
		t.Errorf("migration ran %d times, want 1", ran)
	}

	// This binary refuses the newer file instead of misreading it.
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer than this xarfd") {
		t.Fatalf("opening a newer schema: %v", err)
	}
}

func TestRecoverQuarantinesUnreadable(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	good := msg(t, "fbl")
	noBody := msg(t, "fbl")
	if err := s.PutMessages([]*Message{good, noBody}, [][]byte{[]byte("good"), []byte("gone")}); err != nil {
		t.Fatal(err)
	}
	badID, _ := NewID()
	garbageID, _ := NewID()
	badRec := (&record{msg: []byte("{not json"), raw: []byte("body"), hasRaw: true}).encode()
	err := s.Commit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		if err := b.Put(badID[:], badRec); err != nil {
			return err
		}
		if err := b.Put(garbageID[:], []byte("\x07garbage")); err != nil {
			return err
		}
		rec, _, err := getRecord(tx, noBody.ID[:])
		if err != nil {
			return err
		}
		rec.raw, rec.hasRaw = nil, false
		return putRecord(tx, noBody.ID, &rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Recover()
	if err != nil || n != 3 {
		t.Fatalf("Recover = %d, %v; want 3", n, err)
	}
	q, err := s.QuarantineEntries()
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]QuarantineEntry{}
	for _, e := range q {
		reasons[e.Key] = e
	}
	if e := reasons[badID.String()]; e.Reason != "message record cannot be decoded" || !bytes.Equal(e.Record, badRec) {
		t.Errorf("bad record entry = %+v", e)
	}
	if e := reasons[garbageID.String()]; e.Reason != "record cannot be decoded" || string(e.Record) != "\x07garbage" {
		t.Errorf("garbage record entry = %+v", e)
	}
	if e := reasons[noBody.ID.String()]; e.Reason != "message body is missing" {
		t.Errorf("missing body entry = %+v", e)
	}
	// The good one is untouched and a second pass finds nothing.
	if _, err := s.Message(good.ID); err != nil {
		t.Error(err)
	}
	if n, _ := s.Recover(); n != 0 {
		t.Errorf("second Recover quarantined %d", n)
	}
}

func TestQuarantineMessage(t *testing.T) {
	s := open(t, t.TempDir())
	m := msg(t, "fbl")
	if err := s.PutMessages([]*Message{m}, [][]byte{[]byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Quarantine(m.ID, "not a report: delivery status notification"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Message(m.ID)
	if got.Status != StatusQuarantined || got.Reason == "" {
		t.Errorf("status %q reason %q", got.Status, got.Reason)
	}
	q, _ := s.QuarantineEntries()
	if len(q) != 1 || q[0].Key != m.ID.String() {
		t.Errorf("quarantine = %+v", q)
	}
}

// idAt makes a UUIDv7 of the given time, as NewID would have then.
func idAt(t testing.TB, at time.Time) ID {
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	ms := uint64(at.UnixMilli())
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], ms<<16)
	copy(id[:6], b[:6])
	return id
}

func TestSweepDeletesOnlyOldDataOfItsChannel(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now()
	var msgs []*Message
	var raws [][]byte
	add := func(ch string, age time.Duration) *Message {
		m := msg(t, ch)
		m.ID = idAt(t, now.Add(-age))
		msgs = append(msgs, m)
		raws = append(raws, []byte(ch))
		return m
	}
	var old []*Message
	for i := 0; i < sweepChunk+5; i++ { // more than one chunk
		old = append(old, add("trap", 48*time.Hour+time.Duration(i)*time.Second))
	}
	fresh := add("trap", time.Hour)
	otherOld := add("fbl", 48*time.Hour)
	if err := s.PutMessages(msgs, raws); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep("trap", now.Add(-24*time.Hour))
	if err != nil || n != len(old) {
		t.Fatalf("Sweep = %d, %v; want %d", n, err, len(old))
	}
	for _, m := range old[:3] {
		if _, err := s.Raw(m.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("old body still there: %v", err)
		}
		if _, err := s.Message(m.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("old record still there: %v", err)
		}
	}
	for _, m := range []*Message{fresh, otherOld} {
		if _, err := s.Raw(m.ID); err != nil {
			t.Errorf("%s message swept: %v", m.Channel, err)
		}
	}
	var left int
	s.ForEachMessage("trap", func(*Message) error { left++; return nil })
	if left != 1 {
		t.Errorf("trap index has %d entries, want 1", left)
	}
}

func BenchmarkPutMessage(b *testing.B) {
	for _, size := range []int{2 << 10, 20 << 10} {
		b.Run(fmt.Sprintf("%dKB/parallel", size>>10), func(b *testing.B) {
			var txs, ops atomic.Int64
			s, err := Open(b.TempDir(), Options{OnCommit: func(n int, _ time.Duration) { txs.Add(1); ops.Add(int64(n)) }})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			raw := bytes.Repeat([]byte("x"), size)
			b.SetBytes(int64(size))
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.PutMessages([]*Message{msg(b, "fbl")}, [][]byte{raw}); err != nil {
						b.Error(err)
					}
				}
			})
			b.ReportMetric(float64(ops.Load())/float64(max(txs.Load(), 1)), "ops/commit")
		})
	}
}

// BenchmarkPutMessageSerial is one client waiting for each commit: the
// fsync latency bound of a single SMTP session.
func BenchmarkPutMessageSerial(b *testing.B) {
	s := open(b, b.TempDir())
	raw := bytes.Repeat([]byte("x"), 2<<10)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := s.PutMessages([]*Message{msg(b, "fbl")}, [][]byte{raw}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestQuarantinePage(t *testing.T) {
	s := open(t, t.TempDir())
	var ids []ID
	for i := range 7 {
		m := msg(t, []string{"trap", "fbl"}[i%2])
		m.Status, m.Reason = StatusQuarantined, fmt.Sprintf("reason %d", i)
		if err := s.PutMessages([]*Message{m}, [][]byte{[]byte("body")}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	// A record that could not be read sits in the quarantine without a
	// message; its key is newer than every id above.
	badID, _ := NewID()
	err := s.Commit(func(tx *bbolt.Tx) error { return tx.Bucket(bucketRecords).Put(badID[:], []byte("garbage")) })
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Recover(); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v", n, err)
	}

	// Pages of three, newest first, cover everything exactly once.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := s.QuarantinePage("", cursor, 3)
		if err != nil || pages > 5 {
			t.Fatalf("page %d: %v", pages, err)
		}
		for _, q := range page {
			got = append(got, q.Entry.Key)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	want := []string{badID.String()}
	for i := len(ids) - 1; i >= 0; i-- {
		want = append(want, ids[i].String())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("paged keys\n got %v\nwant %v", got, want)
	}

	// The channel filter keeps messages of that channel only, with their
	// records; the unreadable record has no channel.
	page, next, err := s.QuarantinePage("fbl", "", 0)
	if err != nil || next != "" || len(page) != 3 {
		t.Fatalf("fbl page: %d entries, next %q, %v", len(page), next, err)
	}
	for _, q := range page {
		if q.Message == nil || q.Message.Channel != "fbl" || q.Entry.Reason != q.Message.Reason {
			t.Errorf("fbl entry %+v with message %+v", q.Entry, q.Message)
		}
	}
	if all, _, _ := s.QuarantinePage("", "", 1); len(all) != 1 || all[0].Message != nil || all[0].Entry.Reason != "record cannot be decoded" {
		t.Errorf("newest entry = %+v", all)
	}
}

// The buckets a delivery appends to keep their leaves full: with bbolt's
// default split they would stay half empty, twice the leaves for the same
// keys.
func TestAppendBucketsPackLeaves(t *testing.T) {
	s := open(t, t.TempDir())
	for i := range 400 {
		m := msg(t, "trap")
		if i%2 == 0 {
			m.Status, m.Reason = StatusQuarantined, "no origin"
		}
		if err := s.PutMessages([]*Message{m}, [][]byte{[]byte("body")}); err != nil {
			t.Fatal(err)
		}
	}
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketByChannel, bucketQuarantine} {
			st := tx.Bucket(name).Stats()
			if st.LeafPageN < 2 {
				t.Fatalf("%s: %d leaf pages, want a tree of several", name, st.LeafPageN)
			}
			// The default split leaves them about half used; full ones
			// still waste the tail of a page that the next record does
			// not fit in, and the last leaf is partly empty.
			if use := float64(st.LeafInuse) / float64(st.LeafAlloc-s.db.Info().PageSize); use < 0.75 {
				t.Errorf("%s: leaves %.0f%% used (%d pages), want full ones", name, 100*use, st.LeafPageN)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
