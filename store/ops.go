package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// bucketOps holds the ids of the operators' actions a cluster node has
// applied (package cluster): key the action id, value when it was applied
// (Unix nanoseconds, 8 bytes big-endian). A node meets each of its own
// actions twice (applied at once, then from the stream) and a redelivered
// one again; the mark makes the second time change nothing.
var bucketOps = []byte("cluster_ops")

// maxOpID bounds an action id kept as a key.
const maxOpID = 64

// OpApplied says whether action id was applied on this node.
func (s *Store) OpApplied(id string) (bool, error) {
	var ok bool
	err := s.view(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketOps); b != nil {
			ok = b.Get([]byte(id)) != nil
		}
		return nil
	})
	return ok, err
}

// MarkOp records that action id was applied at now.
func (s *Store) MarkOp(id string, now time.Time) error {
	if id == "" || len(id) > maxOpID {
		return fmt.Errorf("store: marking an operator's action applied: id of %d bytes", len(id))
	}
	return s.Commit(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOps)
		if err != nil {
			return fmt.Errorf("creating bucket %s: %w", bucketOps, err)
		}
		return b.Put([]byte(id), binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano())))
	})
}

// PruneOps forgets the actions applied before before (the stream no
// longer holds them, so they cannot come again), and returns how many.
func (s *Store) PruneOps(before time.Time) (int, error) {
	n := 0
	err := s.Commit(func(tx *bbolt.Tx) error {
		n = 0
		b := tx.Bucket(bucketOps)
		if b == nil {
			return nil
		}
		var old [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < before.UnixNano() {
				old = append(old, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
		return nil
	})
	return n, err
}

// OpenCase returns the unresolved case of key, or ErrNotFound: a case
// action from another cluster node names the case by its key, since each
// node has its own id for it.
func (s *Store) OpenCase(key string) (*Case, error) {
	var out *Case
	err := s.view(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketCasesOpen) == nil {
			return ErrNotFound
		}
		var err error
		out, err = (&CaseTx{tx: tx}).Open(key)
		if err == nil && out == nil {
			err = ErrNotFound
		}
		return err
	})
	return out, err
}
