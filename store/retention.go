package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// sweepChunk bounds one retention transaction, so that the sweeper never
// holds the writer for long and ingest keeps its latency.
const sweepChunk = 1000

// Sweep deletes the messages of channel received before cutoff and
// returns how many it deleted.
func (s *Store) Sweep(channel string, cutoff time.Time) (int, error) {
	// Ids are UUIDv7: every id below this key is older than cutoff.
	limit := timeKey(cutoff)
	total := 0
	prefix := channelPrefix(channel)
	for {
		n := 0
		err := s.Commit(func(tx *bbolt.Tx) error {
			n = 0
			var old [][]byte
			c := tx.Bucket(bucketByChannel).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) &&
				bytes.Compare(k[len(prefix):], limit[:]) < 0 && len(old) < sweepChunk; k, _ = c.Next() {
				old = append(old, append([]byte(nil), k...))
			}
			for _, k := range old {
				if err := deleteAll(tx, k, k[len(prefix):]); err != nil {
					return err
				}
			}
			n = len(old)
			return nil
		})
		total += n
		if err != nil || n < sweepChunk {
			return total, err
		}
	}
}

// deleteAll removes everything stored under id: the record (message,
// body, report), the source index, the outbox entry, the quarantine
// entry (which, for a record Recover could not read, holds its bytes)
// and the channel index key ck (a report and its evidence go together).
func deleteAll(tx *bbolt.Tx, ck, id []byte) error {
	if err := deleteRecord(tx, id); err != nil {
		return err
	}
	if err := deleteOutbox(tx, id); err != nil {
		return err
	}
	if len(id) == 16 {
		if err := tx.Bucket(bucketQuarantine).Delete([]byte(ID(id).String())); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketByChannel).Delete(ck)
}

// deleteRecord removes the record of id and its source-index key. A
// record that cannot be decoded is deleted all the same: its index key
// then stays behind, and queries skip keys without record.
func deleteRecord(tx *bbolt.Tx, id []byte) error {
	if rec, ok, _ := getRecord(tx, id); ok && len(rec.rep) > 0 {
		var r Report
		if json.Unmarshal(rec.rep, &r) == nil && r.SourceIP.IsValid() {
			if err := tx.Bucket(bucketByIP).Delete(ipKey(r.SourceIP, r.ID)); err != nil {
				return err
			}
		}
	}
	if err := unqueueLate(tx, id); err != nil {
		return err
	}
	return tx.Bucket(bucketRecords).Delete(id)
}

// deleteOutbox removes the outbox entry k with its due-index key, its
// rendered message (which embeds the evidence and must not outlive it)
// and its attempt history.
func deleteOutbox(tx *bbolt.Tx, k []byte) error {
	ob := tx.Bucket(bucketOutbox)
	if v := ob.Get(k); v != nil {
		var e OutboxEntry
		if json.Unmarshal(v, &e) == nil && e.indexed() {
			if err := tx.Bucket(bucketOutboxDue).Delete(dueKey(e.due(), e.ID)); err != nil {
				return err
			}
		}
	}
	if err := tx.Bucket(bucketOutboxMail).Delete(k); err != nil {
		return err
	}
	if err := deleteAttemptsTx(tx, k); err != nil {
		return err
	}
	return ob.Delete(k)
}

// Retention maps a channel name to how long its data is kept.
type Retention map[string]time.Duration

// RunRetention sweeps every channel each interval until ctx ends: the
// channels of r with their own retention, and every other channel that
// has data in the store (one removed from or renamed in the
// configuration) with orphaned, so that nothing is kept forever because
// its channel is gone; orphaned <= 0 keeps such data. report is called
// after each sweep of a channel that deleted something or failed.
func (s *Store) RunRetention(ctx context.Context, r Retention, orphaned time.Duration, interval time.Duration, report func(channel string, n int, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for ch, keep := range r {
			n, err := s.Sweep(ch, time.Now().Add(-keep))
			if n > 0 || err != nil {
				report(ch, n, err)
			}
		}
		if orphaned > 0 {
			s.sweepOrphaned(r, orphaned, report)
		}
		// Hourly counters outlive the records they count (no personal
		// data), but not StatsKeep.
		if _, err := s.PruneHourlyStats(time.Now().Add(-StatsKeep)); err != nil {
			report("", 0, fmt.Errorf("pruning hourly counters: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Store) sweepOrphaned(r Retention, keep time.Duration, report func(channel string, n int, err error)) {
	names, err := s.ChannelNames()
	if err != nil {
		report("", 0, fmt.Errorf("listing stored channels: %w", err))
		return
	}
	for _, ch := range names {
		if _, ok := r[ch]; ok {
			continue
		}
		n, err := s.Sweep(ch, time.Now().Add(-keep))
		if n > 0 || err != nil {
			report(ch, n, err)
		}
	}
}
