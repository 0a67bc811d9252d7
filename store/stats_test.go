package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// statsAt returns the counters of the hours in [from, to) as a map keyed
// "channel hh:mm" for compact comparisons.
func statsAt(t *testing.T, s *Store, from, to time.Time) map[string]counts {
	t.Helper()
	hs, err := s.HourlyStats(from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(hs, func(a, b HourStat) int {
		if c := a.Hour.Compare(b.Hour); c != 0 {
			return c
		}
		if a.Channel < b.Channel {
			return -1
		}
		return 1
	}) {
		t.Errorf("not sorted by hour, then channel: %+v", hs)
	}
	out := map[string]counts{}
	for _, h := range hs {
		if h.Hour.Location() != time.UTC || !h.Hour.Equal(h.Hour.Truncate(time.Hour)) {
			t.Errorf("hour %v is not a UTC hour", h.Hour)
		}
		out[h.Channel+" "+h.Hour.Format("01-02T15")] = counts{h.Messages, h.Reports, h.Quarantined, h.Sent}
	}
	return out
}

func wantStats(t *testing.T, got, want map[string]counts) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hourly counters\n got %v\nwant %v", got, want)
	}
}

// day is a fixed UTC day the tests place records in by their ids.
var day = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func at(h, m int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

// seedStats stores, in channels fbl and trap: messages with reports (one
// queued for sending), a quarantined message, a stored-only message and
// a report without message, at known hours.
func seedStats(t *testing.T, s *Store) (sending ID) {
	t.Helper()
	conv := msgAt(t, "fbl", at(10, 5))
	conv.Status = StatusConverted
	conv2 := msgAt(t, "fbl", at(10, 59))
	conv2.Status = StatusConverted
	q := msgAt(t, "fbl", at(11, 0))
	q.Status, q.Reason = StatusQuarantined, "not an ARF report"
	plain := msgAt(t, "trap", at(10, 30))
	sub := idAt(t, at(12, 1))
	err := s.Put([]Entry{
		{Message: conv, Raw: []byte("a"), Report: &Report{ID: conv.ID, Channel: "fbl", XARF: []byte(`{}`)},
			Outbox: &OutboxEntry{ID: conv.ID, Channel: "fbl", Status: OutboxPending, Created: at(10, 5)}},
		{Message: conv2, Raw: []byte("b"), Report: &Report{ID: conv2.ID, Channel: "fbl", XARF: []byte(`{}`)}},
		{Message: q, Raw: []byte("c")},
		{Message: plain, Raw: []byte("d")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put([]Entry{{Report: &Report{ID: sub, Channel: "trap", Via: "http", XARF: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	return conv.ID
}

var seededCounts = map[string]counts{
	"fbl 03-01T10":  {messages: 2, reports: 2},
	"trap 03-01T10": {messages: 1},
	"fbl 03-01T11":  {messages: 1, quarantined: 1},
	"trap 03-01T12": {reports: 1},
}

func TestHourlyStatsCountWhatPutAndMarkSentStore(t *testing.T) {
	s := open(t, t.TempDir())
	id := seedStats(t, s)
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), seededCounts)

	// Storing the same records again (a report added to a message, a
	// message given again) counts nothing twice.
	rep, err := s.GetReport(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put([]Entry{{Report: rep}}); err != nil {
		t.Fatal(err)
	}
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), seededCounts)

	// Sent counts in the hour of sending.
	if _, err := s.Claim(id, at(13, 0), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSent(id, at(13, 20), "", false); err != nil {
		t.Fatal(err)
	}
	want := map[string]counts{"fbl 03-01T13": {sent: 1}}
	for k, v := range seededCounts {
		want[k] = v
	}
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), want)

	// Quarantining a stored message counts once, in the hour it happens.
	var trapMsg ID
	s.ForEachMessage("trap", func(m *Message) error { trapMsg = m.ID; return nil })
	if err := s.Quarantine(trapMsg, "late"); err != nil {
		t.Fatal(err)
	}
	if err := s.Quarantine(trapMsg, "later"); err != nil {
		t.Fatal(err)
	}
	now := hourStart(time.Now())
	got := statsAt(t, s, now, now.Add(time.Hour))
	if c := got["trap "+now.Format("01-02T15")]; c.quarantined != 1 {
		t.Fatalf("quarantine now: %v", got)
	}

	// [from, to): an hour is in when its start is.
	wantStats(t, statsAt(t, s, at(10, 0), at(11, 0)), map[string]counts{
		"fbl 03-01T10": {messages: 2, reports: 2}, "trap 03-01T10": {messages: 1}})
	wantStats(t, statsAt(t, s, at(10, 1), at(12, 0)), map[string]counts{
		"fbl 03-01T11": {messages: 1, quarantined: 1}})
	wantStats(t, statsAt(t, s, at(12, 0), at(12, 0)), map[string]counts{})
}

// The counters are written in the transaction of what they count: a
// commit that fails leaves both unwritten, and in a group one failing
// operation takes only its own counts with it.
func TestHourlyStatsShareTheTransaction(t *testing.T) {
	var fail atomic.Bool
	s, err := Open(t.TempDir(), Options{FaultCommit: func() error {
		if fail.Load() {
			return errors.New("injected I/O error")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	id := seedStats(t, s)
	if _, err := s.Claim(id, at(13, 0), time.Minute); err != nil {
		t.Fatal(err)
	}

	fail.Store(true)
	m := msgAt(t, "fbl", at(10, 10))
	if err := s.Put([]Entry{{Message: m, Raw: []byte("x")}}); !errors.Is(err, ErrCommit) {
		t.Fatalf("put: %v, want a commit error", err)
	}
	if _, err := s.MarkSent(id, at(13, 20), "", false); !errors.Is(err, ErrCommit) {
		t.Fatalf("mark sent: %v, want a commit error", err)
	}
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), seededCounts)
	if _, err := s.Message(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the failed put stored its record: %v", err)
	}
	fail.Store(false)

	// A group of which one operation fails: the others' counts stay.
	ok := msgAt(t, "fbl", at(10, 20))
	bad := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		bad <- s.Commit(func(tx *bbolt.Tx) error {
			d := statsDelta{}
			d.add(at(10, 0), "fbl", counts{messages: 100})
			if err := d.apply(tx); err != nil {
				return err
			}
			return errors.New("this operation fails after counting")
		})
	}()
	go func() { done <- s.Put([]Entry{{Message: ok, Raw: []byte("x")}}) }()
	if err := <-bad; err == nil {
		t.Fatal("failing operation succeeded")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := map[string]counts{}
	for k, v := range seededCounts {
		want[k] = v
	}
	want["fbl 03-01T10"] = counts{messages: 3, reports: 2}
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), want)
}

// asSchema3 turns the store in dir into what schema 3 left: no counters,
// schema version 3.
func asSchema3(t *testing.T, dir string) {
	t.Helper()
	db, err := bbolt.Open(dir+"/"+FileName, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range statsBuckets {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, 3))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHourlyStatsBackfill(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	id := seedStats(t, s)
	if _, err := s.Claim(id, at(13, 0), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSent(id, at(13, 20), "", false); err != nil {
		t.Fatal(err)
	}
	before := statsAt(t, s, day, day.Add(24*time.Hour))
	s.Close()
	asSchema3(t, dir)

	s = open(t, dir)
	if s.FoundSchema() != 3 {
		t.Fatalf("FoundSchema = %d", s.FoundSchema())
	}
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), before)
	s.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta).Get(keyMigrate4) != nil {
			t.Error("the backfill's position is left behind")
		}
		return nil
	})
}

// A crash between backfill steps: the next start carries on from the
// position committed with the counts, and counts every record once.
func TestHourlyStatsBackfillResumes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	n := 2*migrateStepSize + 10
	entries := make([]Entry, n)
	for i := range entries {
		m := msgAt(t, []string{"fbl", "trap"}[i%2], at(i%24, i%60))
		if i%3 == 0 {
			m.Status, m.Reason = StatusQuarantined, "x"
		}
		entries[i] = Entry{Message: m, Raw: []byte("x")}
	}
	if err := s.Put(entries); err != nil {
		t.Fatal(err)
	}
	before := statsAt(t, s, day, day.Add(24*time.Hour))
	s.Close()
	asSchema3(t, dir)

	s, err := Open(dir, Options{Migrations: migrations[:3]})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a step into the records, then the next
		err = s.db.Update(func(tx *bbolt.Tx) error {
			more, err := migrateStatsStep(tx)
			if !more {
				t.Error("backfill finished early")
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, dir)
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), before)
	var total uint64
	for _, c := range before {
		total += c.messages
	}
	if total != uint64(n) {
		t.Fatalf("counted %d messages, stored %d", total, n)
	}
}

func TestHourlyStatsDamagedAndPruned(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	seedStats(t, s)
	key := statsKey(at(11, 0), "fbl")
	err := s.db.Update(func(tx *bbolt.Tx) error {
		v := append([]byte(nil), tx.Bucket(bucketStats).Get(key)...)
		v[len(v)-1] ^= 0x40
		return tx.Bucket(bucketStats).Put(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.HourlyStats(day, day.Add(24*time.Hour)); !errors.Is(err, ErrDamaged) {
		t.Fatalf("damaged counter served: %v", err)
	}
	// Mail keeps flowing; the damaged counter is left as it is.
	m := msgAt(t, "fbl", at(11, 30))
	if err := s.Put([]Entry{{Message: m, Raw: []byte("x")}}); err != nil {
		t.Fatalf("a damaged counter refused mail: %v", err)
	}
	wantStats(t, statsAt(t, s, at(10, 0), at(11, 0)), map[string]counts{
		"fbl 03-01T10": {messages: 2, reports: 2}, "trap 03-01T10": {messages: 1}})
	s.Close()
	rep, err := Check(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "hourly counter 2026-03-01T11:00:00Z") {
		t.Fatalf("check-store: %q", rep.Problems)
	}

	s = open(t, dir)
	n, err := s.PruneHourlyStats(at(12, 0))
	if err != nil || n != 3 {
		t.Fatalf("pruned %d, %v; want the three counters of 10:00 and 11:00", n, err)
	}
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), map[string]counts{"trap 03-01T12": {reports: 1}})
}

func FuzzDecodeCounts(f *testing.F) {
	f.Add(counts{1, 2, 3, 4}.encode())
	f.Add([]byte{statsVersion, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= statsHeader && b[0] == statsVersion {
			b = append([]byte(nil), b...)
			binary.BigEndian.PutUint32(b[1:], statsSum(b))
		}
		c, err := decodeCounts(b)
		if err != nil {
			return
		}
		if again, err := decodeCounts(c.encode()); err != nil || again != c {
			t.Fatalf("%x does not round-trip", b)
		}
	})
}

// The newest hour's counters sit in stats_now; a newer hour moves them
// to stats_hourly; a late increment of an older hour goes there directly.
// Every count is read back once, whichever bucket holds it.
func TestHourlyStatsRollOver(t *testing.T) {
	s := open(t, t.TempDir())
	put := func(h, m int, channel string) {
		t.Helper()
		if err := s.Put([]Entry{{Message: msgAt(t, channel, at(h, m)), Raw: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
	}
	put(10, 0, "a")
	put(10, 1, "b")
	put(11, 0, "a")  // moves 10 out
	put(10, 59, "a") // late: straight to the archive
	put(11, 5, "b")
	put(12, 0, "a")  // moves 11 out
	put(11, 59, "b") // late
	wantStats(t, statsAt(t, s, day, day.Add(24*time.Hour)), map[string]counts{
		"a 03-01T10": {messages: 2}, "b 03-01T10": {messages: 1},
		"a 03-01T11": {messages: 1}, "b 03-01T11": {messages: 2},
		"a 03-01T12": {messages: 1},
	})
	s.View(func(tx *bbolt.Tx) error {
		now := map[string]bool{}
		tx.Bucket(bucketStatsNow).ForEach(func(k, _ []byte) error {
			now[string(k)] = true
			if h := statsKeyHour(k); !h.Equal(at(12, 0)) {
				t.Errorf("stats_now holds hour %v", h)
			}
			return nil
		})
		return tx.Bucket(bucketStats).ForEach(func(k, _ []byte) error {
			if now[string(k)] {
				t.Errorf("counter %x in both buckets", k)
			}
			return nil
		})
	})
}

// A Put writes no more pages with a year of counters stored than with
// none: the counters it updates are the newest hour's, inline in the
// root. (A single bucket of the year cost three pages more per Put.)
func TestStatsCostNoPagesOnPut(t *testing.T) {
	pages := func(year bool) float64 {
		s := open(t, t.TempDir())
		if year {
			if err := s.Commit(func(tx *bbolt.Tx) error {
				d := statsDelta{}
				for h := range 9600 {
					for _, c := range []string{"fbl", "trap", "x"} {
						d.add(time.Now().Add(-time.Duration(h+1)*time.Hour), c, counts{1, 1, 1, 1})
					}
				}
				return d.applyArchive(tx)
			}); err != nil {
				t.Fatal(err)
			}
		}
		put := func() {
			m := msg(t, "fbl")
			m.Status = StatusConverted
			if err := s.Put([]Entry{{Message: m, Raw: []byte("evidence"), Report: &Report{ID: m.ID, Channel: "fbl", XARF: []byte(`{}`)},
				Outbox: &OutboxEntry{ID: m.ID, Channel: "fbl", Status: OutboxPending}}}); err != nil {
				t.Fatal(err)
			}
		}
		for range 50 {
			put()
		}
		written := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
		before := written()
		const n = 100
		for range n {
			put()
		}
		return float64(written()-before) / n
	}
	without, with := pages(false), pages(true)
	if with > without+0.5 {
		t.Errorf("pages written per Put: %.2f with a year of counters, %.2f without", with, without)
	}
}
