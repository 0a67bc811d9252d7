package store

import (
	"bytes"
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

// Errors of the quarantine actions.
var (
	// ErrNotQuarantined: the id is a stored message or report, but not
	// a quarantined message (any more).
	ErrNotQuarantined = errors.New("store: not a quarantined message")
	// ErrUnreadableQuarantine: the quarantine entry holds a record that
	// could not be read at start (Recover), not a message.
	ErrUnreadableQuarantine = errors.New("store: the quarantine entry is a record that could not be read, not a message")
)

// quarantinedTx reads the quarantined message id inside tx: its
// quarantine entry, its message record and its record (parts alias bbolt
// memory). ErrNotFound when the id is unknown, ErrNotQuarantined when it
// is not a quarantined message, ErrUnreadableQuarantine for an entry
// Recover made of an unreadable record.
func quarantinedTx(tx *bbolt.Tx, id ID) (*QuarantineEntry, *Message, record, error) {
	var none record
	rec, ok, err := getRecord(tx, id[:])
	if err != nil {
		return nil, nil, none, err
	}
	qv := tx.Bucket(bucketQuarantine).Get([]byte(id.String()))
	if qv == nil {
		if ok {
			return nil, nil, none, ErrNotQuarantined
		}
		return nil, nil, none, ErrNotFound
	}
	var q QuarantineEntry
	if json.Unmarshal(qv, &q) != nil || !ok || len(rec.msg) == 0 {
		return nil, nil, none, ErrUnreadableQuarantine
	}
	var m Message
	if err := json.Unmarshal(rec.msg, &m); err != nil {
		return nil, nil, none, ErrUnreadableQuarantine
	}
	if m.Status != StatusQuarantined || len(rec.rep) > 0 {
		return nil, nil, none, ErrNotQuarantined
	}
	return &q, &m, rec, nil
}

// Quarantined returns the quarantined message id with its quarantine
// entry and a copy of its stored bytes (nil when they were withheld),
// read in one transaction. Errors as DeleteQuarantined's.
func (s *Store) Quarantined(id ID) (*QuarantineEntry, *Message, []byte, error) {
	var (
		q   *QuarantineEntry
		m   *Message
		raw []byte
	)
	err := s.view(func(tx *bbolt.Tx) error {
		var (
			rec record
			err error
		)
		q, m, rec, err = quarantinedTx(tx, id)
		if err == nil && rec.hasRaw {
			raw = append([]byte(nil), rec.raw...)
		}
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return q, m, raw, nil
}

// DeleteQuarantined deletes the quarantined message id in one durable
// transaction: its record and bytes, its quarantine entry and its index
// keys. ErrNotFound when the id is unknown, ErrNotQuarantined when it is
// a message or report that is not quarantined, ErrUnreadableQuarantine
// for an entry holding a record that could not be read (its index keys
// cannot be found without its channel; it stays for a later binary).
// The hourly counters keep the message's counts.
func (s *Store) DeleteQuarantined(id ID) error {
	return s.Commit(func(tx *bbolt.Tx) error {
		_, m, _, err := quarantinedTx(tx, id)
		if err != nil {
			return err
		}
		if err := deleteAll(tx, channelKey(m.Channel, id), id[:]); err != nil {
			return fmt.Errorf("deleting quarantined message: %w", err)
		}
		if err := tx.Bucket(bucketQuarantine).Delete([]byte(id.String())); err != nil {
			return fmt.Errorf("deleting quarantine entry: %w", err)
		}
		return nil
	})
}

// ReplaceQuarantined stores the outcome of processing a quarantined
// message again, under its id, in one durable transaction: e.Message
// (same id and channel) with a report (e.Report, and e.Outbox when the
// channel reports) takes the place of the quarantined message and leaves
// the quarantine, counting a report made at now; without a report the
// message stays quarantined with e.Message.Reason. e.Raw must be exactly
// the stored bytes: the record's evidence (already redacted where the
// channel redacts) is never replaced here. ErrNotQuarantined when the
// message left the quarantine meanwhile (deleted or reprocessed by
// another request: ErrNotFound then), and errors as DeleteQuarantined's.
func (s *Store) ReplaceQuarantined(e Entry, now time.Time) error {
	m := e.Message
	if m == nil || e.Raw == nil || m.Withheld {
		return errors.New("store: replacing a quarantined message needs the message and its stored bytes")
	}
	if e.Report != nil && (e.Report.ID != m.ID || e.Report.Channel != m.Channel) {
		return errors.New("store: the report is not of the quarantined message")
	}
	if e.Outbox != nil && (e.Report == nil || e.Outbox.ID != m.ID) {
		return errors.New("store: an outbox entry needs the message's report")
	}
	if (e.Report == nil) != (m.Status == StatusQuarantined) {
		return fmt.Errorf("store: a message without report must stay quarantined (status %q)", m.Status)
	}
	rec := record{raw: e.Raw, hasRaw: true}
	var err error
	if rec.msg, err = json.Marshal(m); err != nil {
		return fmt.Errorf("encoding message record: %w", err)
	}
	var ipk, outbox []byte
	if r := e.Report; r != nil {
		if rec.rep, err = encodeReport(r); err != nil {
			return fmt.Errorf("encoding report: %w", err)
		}
		rec.xarf, rec.cutAt, rec.cut = cutEvidence(r.XARF, rec.raw)
		if r.SourceIP.IsValid() {
			ipk = ipKey(r.SourceIP, r.ID)
		}
		if e.Outbox != nil {
			if outbox, err = json.Marshal(e.Outbox); err != nil {
				return fmt.Errorf("encoding outbox entry: %w", err)
			}
		}
	}
	value := rec.encode()
	return s.Commit(func(tx *bbolt.Tx) error {
		q, old, stored, err := quarantinedTx(tx, m.ID)
		if err != nil {
			return err
		}
		if old.Channel != m.Channel || !stored.hasRaw || !bytes.Equal(stored.raw, e.Raw) {
			return errors.New("store: the reprocessed message is not the stored one (channel or bytes differ)")
		}
		if err := tx.Bucket(bucketRecords).Put(m.ID[:], value); err != nil {
			return fmt.Errorf("storing record: %w", err)
		}
		if e.Report == nil {
			q.Reason, q.Record = m.Reason, nil
			return putQuarantine(tx, q)
		}
		if err := tx.Bucket(bucketQuarantine).Delete([]byte(m.ID.String())); err != nil {
			return fmt.Errorf("deleting quarantine entry: %w", err)
		}
		if ipk != nil {
			if err := tx.Bucket(bucketByIP).Put(ipk, nil); err != nil {
				return fmt.Errorf("indexing report by source: %w", err)
			}
		}
		if e.Outbox != nil {
			if err := putOutboxEncoded(tx, e.Outbox, outbox); err != nil {
				return err
			}
		}
		d := statsDelta{}
		d.add(now, m.Channel, counts{reports: 1})
		return d.apply(tx)
	})
}
