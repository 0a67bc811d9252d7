package store

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"
)

// Migration brings the database from schema version To-1 to To. It runs
// inside the transaction that records the new version, so a crash leaves
// the file at either version, never between.
type Migration struct {
	To  uint64
	Run func(tx *bbolt.Tx) error
}

// migrations is the table Open applies in order; the last To is
// SchemaVersion. A new layout adds an entry here and bumps SchemaVersion.
var migrations = []Migration{
	{To: 1, Run: func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketMessages, bucketRaw, bucketChannels, bucketQuarantine, bucketReports, bucketByIP, bucketOutbox,
			bucketOutboxDue, bucketOutboxMail, bucketOutboxDedup, bucketOutboxRate, bucketContacts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
}

// migrate reads the schema version and runs every newer migration. A file
// written by a newer xarfd is refused rather than misread.
func (s *Store) migrate(ms []Migration) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("creating meta bucket: %w", err)
		}
		var have uint64
		if v := meta.Get(keySchema); len(v) == 8 {
			have = binary.BigEndian.Uint64(v)
		} else if v != nil {
			return fmt.Errorf("schema version is %d bytes long, want 8: not an xarfd database?", len(v))
		}
		want := uint64(0)
		if len(ms) > 0 {
			want = ms[len(ms)-1].To
		}
		if have > want {
			return fmt.Errorf("database schema version %d is newer than this xarfd understands (%d); run a newer xarfd", have, want)
		}
		for _, m := range ms {
			if m.To <= have {
				continue
			}
			if err := m.Run(tx); err != nil {
				return fmt.Errorf("migrating schema to version %d: %w", m.To, err)
			}
			have = m.To
		}
		return meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, have))
	})
}

// Schema returns the schema version recorded in the file.
func (s *Store) Schema() (uint64, error) {
	var v uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keySchema); len(b) == 8 {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v, err
}
