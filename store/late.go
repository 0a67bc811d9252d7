package store

import (
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"
)

// Reports made late. A quarantined message reprocessed into a report
// keeps its id, and so its arrival, which may lie far behind the cursors
// by which the intel and case workers find new reports (they look back
// minutes, not days). ReplaceQuarantined therefore queues the id for each
// worker in the report's own transaction, and each drains its queue,
// deleting an id in the transaction that records what it made of it:
//
//	intel_late   report id -> empty: reports the intel worker still owes
//	cases_late   report id -> empty: reports the case worker still owes
//
// Created on first use; an older binary ignores them (and misses those
// reports, as it always did). Deleting a record (retention, forget,
// DeleteQuarantined) deletes its id from both, so a queue that no worker
// drains (no channel mines indicators, or none uses own) holds at most
// the reprocessed reports still stored.
var (
	bucketIntelLate = []byte("intel_late")
	bucketCasesLate = []byte("cases_late")
)

// queueLate queues report id for the intel and case workers.
func queueLate(tx *bbolt.Tx, id ID) error {
	// The intel worker saw the message while it was quarantined and marked
	// it done with nothing found (it had no report then); that mark must
	// not keep the report from being mined.
	if d := tx.Bucket(bucketIntelDone); d != nil {
		if err := d.Delete(id[:]); err != nil {
			return fmt.Errorf("clearing the intel mark of a reprocessed message: %w", err)
		}
	}
	for _, name := range [][]byte{bucketIntelLate, bucketCasesLate} {
		b, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		if err := b.Put(id[:], nil); err != nil {
			return fmt.Errorf("queueing a reprocessed report in %s: %w", name, err)
		}
	}
	return nil
}

// unqueueLate deletes id from both queues (its record is being deleted).
func unqueueLate(tx *bbolt.Tx, id []byte) error {
	for _, name := range [][]byte{bucketIntelLate, bucketCasesLate} {
		if b := tx.Bucket(name); b != nil {
			if err := b.Delete(id); err != nil {
				return fmt.Errorf("deleting %x from %s: %w", id, name, err)
			}
		}
	}
	return nil
}

// lateIDs returns up to limit ids of queue name, oldest first.
func (s *Store) lateIDs(name []byte, limit int) ([]ID, error) {
	var out []ID
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(name)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if len(k) == len(ID{}) {
				out = append(out, ID(k))
			}
		}
		return nil
	})
	return out, err
}

// IntelLate returns up to limit ids of reports that a reprocess made
// after the intel worker's cursor had passed them, oldest first.
// IntelRecord takes them off the queue, without moving the cursor.
func (s *Store) IntelLate(limit int) ([]ID, error) {
	return s.lateIDs(bucketIntelLate, limit)
}

// ScanLateReports is ScanReports for the reports that a reprocess made
// after the case worker's cursor had passed them: up to limit of them,
// oldest first, that keep accepts and no case has handled, and every id
// it looked at, which the worker takes off the queue with DropLate in
// the transaction that adds the reports to cases.
func (s *Store) ScanLateReports(limit int, keep func(*Report) bool) ([]Report, []ID, error) {
	var out []Report
	var seen []ID
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCasesLate)
		if b == nil {
			return nil
		}
		done, recs := tx.Bucket(bucketCaseReports), tx.Bucket(bucketRecords)
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(seen) < limit; k, _ = c.Next() {
			if len(k) != len(ID{}) {
				continue
			}
			seen = append(seen, ID(k))
			if done != nil && done.Get(k) != nil {
				continue
			}
			if r := scanReport(recs.Get(k), keep); r != nil {
				out = append(out, *r)
			}
		}
		return nil
	})
	return out, seen, err
}

// scanReport decodes the report of record value v, with its XARF
// document, when keep accepts its metadata; nil otherwise, and for a
// record without report, damaged or gone (Recover quarantines damaged
// ones).
func scanReport(v []byte, keep func(*Report) bool) *Report {
	if v == nil {
		return nil
	}
	rec, err := decodeRecord(v)
	if err != nil || len(rec.rep) == 0 {
		return nil
	}
	var m reportMeta
	if err := json.Unmarshal(rec.rep, &m); err != nil {
		return nil
	}
	r := m.report(nil)
	if !keep(r) {
		return nil
	}
	r.XARF = rec.document()
	return r
}

// DropLate takes ids off the case worker's queue of late reports.
func (c *CaseTx) DropLate(ids []ID) error {
	b := c.tx.Bucket(bucketCasesLate)
	if b == nil {
		return nil
	}
	for _, id := range ids {
		if err := b.Delete(id[:]); err != nil {
			return fmt.Errorf("taking %s off the late reports: %w", id, err)
		}
	}
	return nil
}
