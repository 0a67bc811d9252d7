package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"sort"
	"time"

	"go.etcd.io/bbolt"
)

// Hourly counters: per channel and per UTC hour, how many messages were
// accepted, reports made, messages quarantined and outbound reports sent.
// Each is counted inside the transaction that creates what it counts (Put,
// MarkSent, ReprocessQuarantined), so a counter can never disagree with
// the records after a crash: both are committed, or neither.
//
// They count events, each in the hour it happened: a message and what
// became of it at arrival in the hour of its id (ids are UUIDv7: the
// arrival time), a report made later by a reprocess in the hour it was
// made, a sent report in the hour of its SentAt. Nothing that happens
// later rewrites an hour: retention and DeleteQuarantined delete records
// but not their counts (aggregates hold no personal data), and a
// quarantined message reprocessed into a report stays counted as
// quarantined in its hour. Hours older than StatsKeep are pruned by the
// retention loop.
//
// Buckets stats_now (the newest hour) and stats_hourly (the older ones;
// see apply for why two): key = 8-byte big-endian unix seconds of the
// hour's start || channel name; keys sort by hour, then channel. Value:
//
//	byte 0      statsVersion
//	bytes 1-4   CRC-32C (Castagnoli), big-endian, of byte 0 and every byte
//	            after byte 4 (the record-checksum discipline of record.go)
//	uvarints    messages, reports, quarantined, sent
//
// A counter whose checksum does not hold is never served (HourlyStats
// fails with ErrDamaged) and never silently replaced: increments skip it,
// so that one flipped bit in an aggregate does not refuse mail for an
// hour, and check-store names it.

var (
	bucketStats    = []byte("stats_hourly")
	bucketStatsNow = []byte("stats_now")
)

// StatsKeep is how long hourly counters are kept: a little over a year,
// so that a year-on-year comparison still finds its hour.
const StatsKeep = 400 * 24 * time.Hour

const (
	statsVersion = 1
	statsHeader  = 5 // version, CRC-32C
)

// HourStat is what happened in one channel in one UTC hour.
type HourStat struct {
	Channel string `json:"channel"`
	// Hour is the hour's start, UTC.
	Hour        time.Time `json:"hour"`
	Messages    uint64    `json:"messages"`
	Reports     uint64    `json:"reports"`
	Quarantined uint64    `json:"quarantined"`
	Sent        uint64    `json:"sent"`
}

// counts are the four counters of one key.
type counts struct{ messages, reports, quarantined, sent uint64 }

func (c *counts) add(d counts) {
	c.messages += d.messages
	c.reports += d.reports
	c.quarantined += d.quarantined
	c.sent += d.sent
}

func (c counts) encode() []byte {
	b := make([]byte, statsHeader, statsHeader+4*binary.MaxVarintLen64)
	b[0] = statsVersion
	for _, n := range []uint64{c.messages, c.reports, c.quarantined, c.sent} {
		b = binary.AppendUvarint(b, n)
	}
	binary.BigEndian.PutUint32(b[1:], statsSum(b))
	return b
}

func statsSum(v []byte) uint32 {
	return crc32.Update(crc32.Checksum(v[:1], castagnoli), castagnoli, v[statsHeader:])
}

var errStatsValue = fmt.Errorf("%w: the hourly counter is truncated or of an unknown version", ErrDamaged)

func decodeCounts(v []byte) (counts, error) {
	var c counts
	if len(v) < statsHeader || v[0] != statsVersion {
		return c, errStatsValue
	}
	if binary.BigEndian.Uint32(v[1:]) != statsSum(v) {
		return c, fmt.Errorf("%w: the hourly counter's checksum does not match its bytes", ErrDamaged)
	}
	rest := v[statsHeader:]
	for _, p := range []*uint64{&c.messages, &c.reports, &c.quarantined, &c.sent} {
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return c, errStatsValue
		}
		*p, rest = n, rest[k:]
	}
	if len(rest) != 0 {
		return c, errStatsValue
	}
	return c, nil
}

// hourStart is the start of t's UTC hour.
func hourStart(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

func statsKey(hour time.Time, channel string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(channel)), uint64(max(hourStart(hour).Unix(), 0)))
	return append(k, channel...)
}

func statsKeyHour(k []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(k[:8])), 0).UTC()
}

// statsDelta collects the increments of one transaction, so that each
// counter is read and written once however many records it counts.
type statsDelta map[string]counts // by statsKey

func (d statsDelta) add(hour time.Time, channel string, c counts) {
	k := string(statsKey(hour, channel))
	x := d[k]
	x.add(c)
	d[k] = x
}

// statsBucket returns bucket name, creating it in a store opened with
// an older migration table (tests) or migrated halfway.
func statsBucket(tx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	if b := tx.Bucket(name); b != nil {
		return b, nil
	}
	b, err := tx.CreateBucket(name)
	if err != nil {
		return nil, fmt.Errorf("creating hourly counters: %w", err)
	}
	return b, nil
}

// apply adds d to the stored counters inside tx. The counters of the
// newest hour live in stats_now, a bucket of a few keys that bbolt keeps
// inline in its parent's page, which every commit writes anyway; the
// year of older hours in stats_hourly is a B+tree of its own, whose
// leaf and branch pages a commit would otherwise write too (three more
// pages for each Put: see TestStatsCostNoPagesOnPut). When an increment
// of a newer hour comes, the hour in stats_now moves to stats_hourly;
// an increment of an older hour (a commit late across the hour, a
// backfill, a report sent with an older time) goes to stats_hourly
// directly. So the two never hold the same key. A damaged counter is
// left as it is (see above).
func (d statsDelta) apply(tx *bbolt.Tx) error {
	if len(d) == 0 {
		return nil
	}
	arch, err := statsBucket(tx, bucketStats)
	if err != nil {
		return err
	}
	cur, err := statsBucket(tx, bucketStatsNow)
	if err != nil {
		return err
	}
	keys := d.sortedKeys()
	newest := keys[len(keys)-1][:8]
	if k, _ := cur.Cursor().Last(); k != nil && len(k) >= 8 {
		switch c := bytes.Compare(k[:8], []byte(newest)); {
		case c > 0:
			newest = string(k[:8])
		case c < 0:
			if err := moveStats(cur, arch); err != nil {
				return err
			}
		}
	}
	for _, k := range keys {
		b := arch
		if k[:8] >= newest {
			b = cur
		}
		if err := addStats(b, k, d[k]); err != nil {
			return err
		}
	}
	return nil
}

// applyArchive adds d to stats_hourly only: the backfill, which runs
// before any commit has used stats_now.
func (d statsDelta) applyArchive(tx *bbolt.Tx) error {
	arch, err := statsBucket(tx, bucketStats)
	if err != nil {
		return err
	}
	for _, k := range d.sortedKeys() {
		if err := addStats(arch, k, d[k]); err != nil {
			return err
		}
	}
	return nil
}

func (d statsDelta) sortedKeys() []string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func addStats(b *bbolt.Bucket, k string, n counts) error {
	var c counts
	if v := b.Get([]byte(k)); v != nil {
		var err error
		if c, err = decodeCounts(v); err != nil {
			return nil // damaged: left for check-store, never reset
		}
	}
	c.add(n)
	b.FillPercent = appendFill // keys grow with the hour
	if err := b.Put([]byte(k), c.encode()); err != nil {
		return fmt.Errorf("updating hourly counters: %w", err)
	}
	return nil
}

// moveStats moves every counter of cur into arch, adding to what arch
// holds (nothing, by apply's rule). A damaged counter moves as it is.
func moveStats(cur, arch *bbolt.Bucket) error {
	type kv struct{ k, v []byte }
	var all []kv
	if err := cur.ForEach(func(k, v []byte) error {
		all = append(all, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
		return nil
	}); err != nil {
		return err
	}
	for _, e := range all {
		n, err := decodeCounts(e.v)
		switch {
		case err != nil && arch.Get(e.k) == nil:
			err = arch.Put(e.k, e.v)
		case err != nil:
			err = nil // both damaged or both present: keep arch's
		default:
			err = addStats(arch, string(e.k), n)
		}
		if err != nil {
			return fmt.Errorf("moving hourly counters: %w", err)
		}
		if err := cur.Delete(e.k); err != nil {
			return fmt.Errorf("moving hourly counters: %w", err)
		}
	}
	return nil
}

// countSentTx counts one report sent at now in channel.
func countSentTx(tx *bbolt.Tx, channel string, now time.Time) error {
	d := statsDelta{}
	d.add(now, channel, counts{sent: 1})
	return d.apply(tx)
}

// statsBuckets are where counters live: older hours, the newest hour.
var statsBuckets = [][]byte{bucketStats, bucketStatsNow}

// forStats calls fn for every counter of the hours in [first, to) in
// both buckets, each bucket in key order.
func forStats(tx *bbolt.Tx, first, to time.Time, fn func(k, v []byte) error) error {
	for _, name := range statsBuckets {
		b := tx.Bucket(name)
		if b == nil {
			continue
		}
		c := b.Cursor()
		for k, v := c.Seek(statsKey(first, "")); k != nil; k, v = c.Next() {
			if len(k) < 8 {
				continue
			}
			if !to.IsZero() && !statsKeyHour(k).Before(to) {
				break
			}
			if err := fn(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// firstHour is the first hour that starts at or after t.
func firstHour(t time.Time) time.Time {
	h := hourStart(t)
	if h.Before(t) {
		h = h.Add(time.Hour)
	}
	return h
}

// HourlyStats returns the counters of every channel for the hours whose
// start lies in [from, to), sorted by hour, then channel. Hours without
// traffic are absent. A damaged counter fails the call with an error
// wrapping ErrDamaged.
func (s *Store) HourlyStats(from, to time.Time) ([]HourStat, error) {
	out := []HourStat{}
	if !to.After(from) {
		return out, nil
	}
	err := s.view(func(tx *bbolt.Tx) error {
		at := map[string]int{} // key -> index in out
		return forStats(tx, firstHour(from), to, func(k, v []byte) error {
			n, err := decodeCounts(v)
			if err != nil {
				return fmt.Errorf("hourly counter %s %s: %w", statsKeyHour(k).Format(time.RFC3339), k[8:], err)
			}
			if i, ok := at[string(k)]; ok {
				h := &out[i]
				h.Messages, h.Reports, h.Quarantined, h.Sent = h.Messages+n.messages, h.Reports+n.reports, h.Quarantined+n.quarantined, h.Sent+n.sent
				return nil
			}
			at[string(k)] = len(out)
			out = append(out, HourStat{Channel: string(k[8:]), Hour: statsKeyHour(k),
				Messages: n.messages, Reports: n.reports, Quarantined: n.quarantined, Sent: n.sent})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	// Each bucket came sorted; stats_now holds the newest hour.
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Hour.Equal(out[j].Hour) {
			return out[i].Hour.Before(out[j].Hour)
		}
		return out[i].Channel < out[j].Channel
	})
	return out, nil
}

// PruneHourlyStats deletes the counters of hours that started before
// cutoff and returns how many it deleted. Damaged counters go too.
func (s *Store) PruneHourlyStats(cutoff time.Time) (int, error) {
	end := statsKey(hourStart(cutoff), "")
	total := 0
	for _, name := range statsBuckets {
		for {
			n := 0
			err := s.Commit(func(tx *bbolt.Tx) error {
				n = 0
				b := tx.Bucket(name)
				if b == nil {
					return nil
				}
				var old [][]byte
				c := b.Cursor()
				for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0 && len(old) < sweepChunk; k, _ = c.Next() {
					old = append(old, append([]byte(nil), k...))
				}
				for _, k := range old {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
				n = len(old)
				return nil
			})
			total += n
			if err != nil {
				return total, err
			}
			if n < sweepChunk {
				break
			}
		}
	}
	return total, nil
}

// checkStats adds a finding for every hourly counter that does not
// decode (check-store).
func checkStats(tx *bbolt.Tx, rep *CheckReport) error {
	for _, name := range statsBuckets {
		b := tx.Bucket(name)
		if b == nil {
			rep.add("bucket %s: missing", name)
			continue
		}
		err := b.ForEach(func(k, v []byte) error {
			if len(k) < 8 {
				rep.add("bucket %s: malformed key %x", name, k)
				return nil
			}
			if _, err := decodeCounts(v); err != nil {
				rep.add("hourly counter %s %q: %v", statsKeyHour(k).Format(time.RFC3339), k[8:], err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Backfill of existing stores (the migration to schema 4): one walk of
// the records and one of the outbox, a bounded step per transaction. The
// walk's position is kept in meta beside the counts it has added, in the
// same transaction, so a step after a crash neither counts twice nor
// misses a record.
var keyMigrate4 = []byte("migrate4_after")

const (
	phaseRecords = 'r'
	phaseOutbox  = 'o'
)

func migrateStatsStep(tx *bbolt.Tx) (bool, error) {
	for _, b := range statsBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return false, err
		}
	}
	meta := tx.Bucket(bucketMeta)
	pos := append([]byte(nil), meta.Get(keyMigrate4)...)
	phase, after := byte(phaseRecords), []byte(nil)
	if len(pos) > 0 {
		phase, after = pos[0], pos[1:]
	}
	src := bucketRecords
	if phase == phaseOutbox {
		src = bucketOutbox
	}
	c := tx.Bucket(src).Cursor()
	k, v := c.First()
	if len(after) > 0 {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	d := statsDelta{}
	var last []byte
	for n := 0; k != nil && n < migrateStepSize; k, v = c.Next() {
		last, n = k, n+1
		if phase == phaseRecords {
			countRecord(d, k, v)
		} else {
			countOutbox(d, v)
		}
	}
	if err := d.applyArchive(tx); err != nil {
		return false, err
	}
	next := []byte(nil)
	switch {
	case k != nil:
		next = append([]byte{phase}, last...)
	case phase == phaseRecords:
		next = []byte{phaseOutbox}
	}
	if next == nil {
		return false, nil // Run deletes the position
	}
	return true, meta.Put(keyMigrate4, next)
}

// countRecord adds what record k, v counts at arrival. A record that
// does not decode counts nothing (Recover and check-store deal with it).
func countRecord(d statsDelta, k, v []byte) {
	if len(k) != 16 {
		return
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return
	}
	var id ID
	copy(id[:], k)
	var c counts
	channel := ""
	if len(rec.msg) > 0 {
		var m struct {
			Channel string `json:"channel"`
			Status  string `json:"status"`
		}
		if json.Unmarshal(rec.msg, &m) != nil {
			return
		}
		channel = m.Channel
		c.messages = 1
		if m.Status == StatusQuarantined {
			c.quarantined = 1
		}
	}
	if len(rec.rep) > 0 {
		var m reportMeta
		if json.Unmarshal(rec.rep, &m) == nil {
			if channel == "" {
				channel = m.Channel
			}
			c.reports = 1
		}
	}
	if channel != "" && c != (counts{}) {
		d.add(IDTime(id), channel, c)
	}
}

func countOutbox(d statsDelta, v []byte) {
	var e struct {
		Channel string       `json:"channel"`
		Status  OutboxStatus `json:"status"`
		SentAt  time.Time    `json:"sent_at"`
	}
	if json.Unmarshal(v, &e) != nil || e.Status != OutboxSent || e.SentAt.IsZero() || e.Channel == "" {
		return
	}
	d.add(e.SentAt, e.Channel, counts{sent: 1})
}
