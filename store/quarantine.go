package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/bbolt"
)

// QuarantineEntry is something kept but set aside: a message that yields
// no report, or a record this binary could not read at start.
type QuarantineEntry struct {
	// Key is the id of the message (or the raw bucket key of an
	// unreadable record).
	Key    string    `json:"key"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Record holds the bytes of a record that could not be decoded, so
	// that nothing is lost and a later binary can retry.
	Record []byte `json:"record,omitempty"`
}

// Quarantine marks message id as quarantined with reason; its record and
// raw bytes stay where they are.
func (s *Store) Quarantine(id ID, reason string) error {
	now := time.Now().UTC()
	return s.Commit(func(tx *bbolt.Tx) error {
		rec, ok, err := getRecord(tx, id[:])
		if err != nil {
			return err
		}
		if !ok || len(rec.msg) == 0 {
			return ErrNotFound
		}
		var m Message
		if err := json.Unmarshal(rec.msg, &m); err != nil {
			return fmt.Errorf("decoding message record: %w", err)
		}
		was := m.Status == StatusQuarantined
		m.Status, m.Reason = StatusQuarantined, reason
		if rec.msg, err = json.Marshal(&m); err != nil {
			return err
		}
		if err := putRecord(tx, id, &rec); err != nil {
			return err
		}
		if !was {
			d := statsDelta{}
			d.add(now, m.Channel, counts{quarantined: 1})
			if err := d.apply(tx); err != nil {
				return err
			}
		}
		return putQuarantine(tx, &QuarantineEntry{Key: id.String(), Reason: reason, At: now})
	})
}

func putQuarantine(tx *bbolt.Tx, e *QuarantineEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketQuarantine).Put([]byte(e.Key), b)
}

// QuarantineEntries lists the quarantine.
func (s *Store) QuarantineEntries() ([]QuarantineEntry, error) {
	var out []QuarantineEntry
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			var e QuarantineEntry
			if err := json.Unmarshal(v, &e); err != nil {
				e = QuarantineEntry{Key: string(k), Reason: "unreadable quarantine entry", Record: append([]byte(nil), v...)}
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// MaxQuarantineCursor is the longest cursor QuarantinePage can have
// returned: quarantine keys are message ids, or for a record that could
// not be read the hex of its key, and bbolt keys are at most
// bbolt.MaxKeySize bytes.
const MaxQuarantineCursor = 2 * bbolt.MaxKeySize

// QuarantinedMessage is one quarantine entry with the record of its
// message (nil when the entry is a record that could not be read).
type QuarantinedMessage struct {
	Entry   QuarantineEntry
	Message *Message
}

// QuarantinePage lists the quarantine newest first: keys are ids, which
// sort by arrival. It starts below the key before ("" for the newest),
// returns at most limit entries (MaxLimit when 0 or more), only those of
// channel when it is set, and the cursor of the next page ("" on the
// last). Entry and record are read in one transaction.
func (s *Store) QuarantinePage(channel, before string, limit int) ([]QuarantinedMessage, string, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	var (
		out  []QuarantinedMessage
		next string
	)
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketQuarantine).Cursor()
		var k, v []byte
		if before == "" {
			k, v = c.Last()
		} else if k, v = c.Seek([]byte(before)); k == nil {
			k, v = c.Last()
		}
		for ; k != nil; k, v = c.Prev() {
			if before != "" && string(k) >= before {
				continue
			}
			var e QuarantineEntry
			if err := json.Unmarshal(v, &e); err != nil {
				e = QuarantineEntry{Key: string(k), Reason: "unreadable quarantine entry"}
			}
			q := QuarantinedMessage{Entry: e}
			if id, err := uuid.Parse(string(k)); err == nil {
				if rec, ok, _ := getRecord(tx, id[:]); ok && len(rec.msg) > 0 {
					var m Message
					if json.Unmarshal(rec.msg, &m) == nil {
						q.Message = &m
					}
				}
			}
			if channel != "" && (q.Message == nil || q.Message.Channel != channel) {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].Entry.Key
				return nil
			}
			out = append(out, q)
		}
		return nil
	})
	return out, next, err
}

// Recover checks every record at start. A record that cannot be decoded,
// or whose message body is missing, is moved to the quarantine with its
// bytes, so one bad record never stops the daemon nor gets lost. It
// returns how many were quarantined. A record whose checksum does not
// hold is left in place and reported to OnDamage.
func (s *Store) Recover() (int, error) {
	type bad struct {
		key    []byte
		rec    []byte
		reason string
	}
	var found []bad
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			reason := ""
			rec, err := decodeRecord(v)
			var m Message
			switch {
			case len(k) != 16:
				reason = "record key is not an id"
			case errors.Is(err, errChecksum):
				// Damaged bytes stay where they are: reads report them
				// (500, OnDamage) until the store is restored from a
				// backup; moving them would hide the damage.
				if s.onDamage != nil {
					var id ID
					copy(id[:], k)
					s.onDamage(id)
				}
				return nil
			case err != nil:
				reason = "record cannot be decoded"
			case len(rec.msg) > 0 && json.Unmarshal(rec.msg, &m) != nil:
				reason = "message record cannot be decoded"
			case len(rec.msg) > 0 && !m.Withheld && !rec.hasRaw:
				reason = "message body is missing"
			case len(rec.rep) > 0 && !json.Valid(rec.rep):
				reason = "report cannot be decoded"
			default:
				return nil
			}
			found = append(found, bad{append([]byte(nil), k...), append([]byte(nil), v...), reason})
			return nil
		})
	})
	if err != nil || len(found) == 0 {
		return 0, err
	}
	now := time.Now().UTC()
	err = s.Commit(func(tx *bbolt.Tx) error {
		for _, b := range found {
			key := fmt.Sprintf("%x", b.key)
			if len(b.key) == 16 {
				var id ID
				copy(id[:], b.key)
				key = id.String()
			}
			if err := putQuarantine(tx, &QuarantineEntry{Key: key, Reason: b.reason, At: now, Record: b.rec}); err != nil {
				return err
			}
			if err := tx.Bucket(bucketRecords).Delete(b.key); err != nil {
				return err
			}
		}
		return nil
	})
	return len(found), err
}
