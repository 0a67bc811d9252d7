package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

var bucketOutbox = []byte("outbox")

// Outbox statuses. An entry is created pending in the transaction that
// stores its report; the reporter moves it on.
const (
	OutboxPending = "pending"
	OutboxSent    = "sent"
	OutboxFailed  = "failed"
	OutboxDryRun  = "dry-run"
)

// OutboxEntry is one report to send to an abuse contact.
type OutboxEntry struct {
	// ID is the report's id.
	ID        ID        `json:"id"`
	Channel   string    `json:"channel"`
	Status    string    `json:"status"`
	Contact   string    `json:"contact,omitempty"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	Created   time.Time `json:"created"`
	// NextAttempt is when a pending entry is due.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Updated     time.Time `json:"updated,omitzero"`
}

func putOutbox(tx *bbolt.Tx, e *OutboxEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding outbox entry: %w", err)
	}
	if err := tx.Bucket(bucketOutbox).Put(e.ID[:], b); err != nil {
		return fmt.Errorf("storing outbox entry: %w", err)
	}
	return nil
}

// Outbox returns up to limit entries with the given status (all when
// empty), newest first, older than before when it is set, and the cursor
// of the next page.
func (s *Store) Outbox(status string, before ID, limit int) ([]OutboxEntry, ID, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	var (
		out  []OutboxEntry
		next ID
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		var k, v []byte
		if before == (ID{}) {
			k, v = c.Last()
		} else {
			k, v = c.Seek(before[:])
			if k == nil {
				k, v = c.Last()
			}
		}
		for ; k != nil; k, v = c.Prev() {
			if before != (ID{}) && bytes.Compare(k, before[:]) >= 0 {
				continue
			}
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decoding outbox entry %x: %w", k, err)
			}
			if status != "" && e.Status != status {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			out = append(out, e)
		}
		return nil
	})
	return out, next, err
}

// OutboxDepth counts pending entries.
func (s *Store) OutboxDepth() (int, error) {
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(_, v []byte) error {
			var e OutboxEntry
			if json.Unmarshal(v, &e) == nil && e.Status == OutboxPending {
				n++
			}
			return nil
		})
	})
	return n, err
}
