package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// Migration brings the database from schema version To-1 to To.
type Migration struct {
	To uint64
	// Step, when set, moves a bounded part of the data and reports
	// whether more is left; Open calls it in a transaction of its own
	// until it is done, so a large database never needs one huge
	// transaction. It must be idempotent: a crash between steps leaves
	// the file at version To-1 with part of the work done, and the next
	// start carries on.
	Step func(tx *bbolt.Tx) (more bool, err error)
	// Run runs inside the transaction that records the new version, so a
	// crash leaves the file at either version, never between.
	Run func(tx *bbolt.Tx) error
}

// migrations is the table Open applies in order; the last To is
// SchemaVersion. A new layout adds an entry here and bumps SchemaVersion.
var migrations = []Migration{
	{To: 1, Run: func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{v1Messages, v1Raw, v1Channels, bucketQuarantine, v1Reports, bucketByIP, bucketOutbox,
			bucketOutboxDue, bucketOutboxMail, bucketOutboxDedup, bucketOutboxRate, bucketContacts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	{To: 2, Step: migrateRecordsStep, Run: func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{v1Messages, v1Raw, v1Channels, v1Reports} {
			if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, bberrors.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	}},
	{To: 3, Step: migrateChecksumStep, Run: func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(keyMigrate3)
	}},
	// Hourly counters (stats.go), backfilled from the records and the
	// outbox.
	{To: 4, Step: migrateStatsStep, Run: func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(keyMigrate4)
	}},
	// Attempt histories (outbox_attempts.go). Existing entries get an
	// empty one: their count, last error and reply stay on the entry, and
	// a row made up from them would claim a time, node and host nobody
	// recorded.
	{To: 5, Run: func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketOutboxAttempts)
		return err
	}},
}

// keyMigrate3 (in meta) is the last record key the migration to schema 3
// has passed, so that each step resumes after it instead of walking the
// records already done: the migration stays linear in the store's size.
var keyMigrate3 = []byte("migrate3_after")

// migrateChecksumStep rewrites up to migrateStepSize version 1 records
// (schema 2) as version 2, with their checksum. Records already at
// version 2 are skipped (a step that committed before a crash), and one
// of no known version is left for Recover to quarantine.
func migrateChecksumStep(tx *bbolt.Tx) (bool, error) {
	meta, recs := tx.Bucket(bucketMeta), tx.Bucket(bucketRecords)
	after := append([]byte(nil), meta.Get(keyMigrate3)...)
	type kv struct{ k, v []byte }
	var todo []kv
	c := recs.Cursor()
	k, v := c.First()
	if after != nil {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	var last []byte
	for n := 0; k != nil && n < migrateStepSize; k, v = c.Next() {
		last, n = k, n+1
		if len(v) > 0 && v[0] == recordVersionV1 {
			todo = append(todo, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
		}
	}
	more := k != nil
	last = append([]byte(nil), last...)
	for _, e := range todo {
		r, err := decodeRecordV1(e.v)
		if err != nil {
			continue // Recover quarantines it with its bytes
		}
		if err := recs.Put(e.k, r.encode()); err != nil {
			return false, err
		}
	}
	if len(last) > 0 {
		if err := meta.Put(keyMigrate3, last); err != nil {
			return false, err
		}
	}
	return more, nil
}

// Schema 1 kept message records, bodies and reports in three buckets and
// the channel index in one nested bucket per channel.
var (
	v1Messages = []byte("messages")
	v1Raw      = []byte("raw")
	v1Reports  = []byte("reports")
	v1Channels = []byte("channels")
)

// migrateStepSize bounds the records one migration transaction moves.
const migrateStepSize = 1000

// migrateRecordsStep moves up to migrateStepSize ids from the schema 1
// buckets into records, and channel index keys into by_channel, deleting
// what it moved: whatever is still in an old bucket has not been moved.
func migrateRecordsStep(tx *bbolt.Tx) (bool, error) {
	for _, b := range [][]byte{bucketRecords, bucketByChannel} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return false, err
		}
	}
	budget := migrateStepSize
	// A record is keyed by id in any of the three old buckets: messages
	// first, then reports without message, then bodies without either.
	for _, from := range [][]byte{v1Messages, v1Reports, v1Raw} {
		src := tx.Bucket(from)
		if src == nil {
			continue
		}
		var ids [][]byte
		c := src.Cursor()
		for k, _ := c.First(); k != nil && len(ids) < budget; k, _ = c.Next() {
			ids = append(ids, append([]byte(nil), k...))
		}
		for _, k := range ids {
			var (
				r   record
				err error
			)
			if b := tx.Bucket(v1Messages); b != nil {
				r.msg = append([]byte(nil), b.Get(k)...)
			}
			if b := tx.Bucket(v1Reports); b != nil {
				if v := b.Get(k); v != nil {
					// Schema 1 kept the document inside the report's
					// JSON. One that does not decode is moved as it is,
					// for Recover to quarantine with its bytes.
					var rep Report
					if json.Unmarshal(v, &rep) != nil {
						r.rep = append([]byte(nil), v...)
					} else if r.rep, err = encodeReport(&rep); err != nil {
						return false, err
					} else {
						r.xarf = rep.XARF
					}
				}
			}
			if b := tx.Bucket(v1Raw); b != nil {
				if v := b.Get(k); v != nil {
					r.raw, r.hasRaw = append([]byte(nil), v...), true
				}
			}
			if err := tx.Bucket(bucketRecords).Put(k, r.encode()); err != nil {
				return false, err
			}
			for _, old := range [][]byte{v1Messages, v1Reports, v1Raw} {
				if b := tx.Bucket(old); b != nil {
					if err := b.Delete(k); err != nil {
						return false, err
					}
				}
			}
		}
		budget -= len(ids)
		if budget == 0 {
			return true, nil
		}
	}
	chans := tx.Bucket(v1Channels)
	if chans == nil {
		return false, nil
	}
	var names [][]byte
	if err := chans.ForEachBucket(func(k []byte) error {
		names = append(names, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return false, err
	}
	for _, name := range names {
		cb := chans.Bucket(name)
		var ids [][]byte
		c := cb.Cursor()
		for k, _ := c.First(); k != nil && len(ids) < budget; k, _ = c.Next() {
			ids = append(ids, append([]byte(nil), k...))
		}
		for _, k := range ids {
			var id ID
			copy(id[:], k)
			if err := tx.Bucket(bucketByChannel).Put(channelKey(string(name), id), nil); err != nil {
				return false, err
			}
			if err := cb.Delete(k); err != nil {
				return false, err
			}
		}
		budget -= len(ids)
		if budget == 0 {
			return true, nil
		}
		if err := chans.DeleteBucket(name); err != nil {
			return false, err
		}
	}
	return false, nil
}

var errForeign = errors.New("not an xarfd database: it holds bbolt buckets but no xarfd schema version; point data_dir at xarfd's own directory")

// migrate reads the schema version and runs every newer migration. A file
// written by a newer xarfd is refused rather than misread.
func (s *Store) migrate(ms []Migration) error {
	var have uint64
	err := s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			// A new file has no bucket at all; one with buckets but
			// no meta is some other program's bbolt database, which
			// must not get xarfd's buckets added to it.
			foreign := tx.ForEach(func([]byte, *bbolt.Bucket) error { return errForeign })
			if foreign != nil {
				return foreign
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("creating meta bucket: %w", err)
		}
		if v := meta.Get(keySchema); len(v) == 8 {
			have = binary.BigEndian.Uint64(v)
		} else if v != nil {
			return fmt.Errorf("schema version is %d bytes long, want 8: not an xarfd database?", len(v))
		}
		return nil
	})
	if err != nil {
		return err
	}
	want := uint64(0)
	if len(ms) > 0 {
		want = ms[len(ms)-1].To
	}
	s.foundSchema = have
	if have > want {
		return fmt.Errorf("database schema version %d is newer than this xarfd understands (%d); run a newer xarfd", have, want)
	}
	for _, m := range ms {
		if m.To <= have {
			continue
		}
		for more := m.Step != nil; more; {
			err := s.update(func(tx *bbolt.Tx) error {
				var err error
				more, err = m.Step(tx)
				return err
			})
			if err != nil {
				return fmt.Errorf("migrating schema to version %d: %w", m.To, err)
			}
		}
		err := s.update(func(tx *bbolt.Tx) error {
			if m.Run != nil {
				if err := m.Run(tx); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, m.To))
		})
		if err != nil {
			return fmt.Errorf("migrating schema to version %d: %w", m.To, err)
		}
		have = m.To
	}
	return nil
}

// FoundSchema returns the schema version the file had when Open found
// it: 0 for a new file, below SchemaVersion when Open migrated it.
func (s *Store) FoundSchema() uint64 { return s.foundSchema }

// Schema returns the schema version recorded in the file.
func (s *Store) Schema() (uint64, error) {
	var v uint64
	err := s.view(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keySchema); len(b) == 8 {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v, err
}
