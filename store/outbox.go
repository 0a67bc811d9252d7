package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/bbolt"
)

var (
	bucketOutbox = []byte("outbox")
	// bucketOutboxDue indexes pending entries by when they are due:
	// 8-byte big-endian unix nanoseconds || id -> empty.
	bucketOutboxDue = []byte("outbox_due")
	// bucketOutboxMail holds the rendered (signed) message of an entry:
	// id -> bytes. Kept apart so that listings stay small.
	bucketOutboxMail = []byte("outbox_mail")
	// bucketOutboxDedup: fingerprint -> JSON dedupRecord.
	bucketOutboxDedup = []byte("outbox_dedup")
	// bucketOutboxRate: contact address -> JSON []time.Time of claims in
	// the last hour.
	bucketOutboxRate = []byte("outbox_rate")
	// bucketContacts caches abuse-contact lookups: key -> JSON CachedContact.
	bucketContacts = []byte("contacts")
)

// OutboxStatus is where an outbox entry is in its lifecycle. Only the
// transitions of outbox_state.go change it; see there for which are legal.
//
//	pending ──Claim──► sending ──MarkSent──► sent
//	   ▲                  │ ├──GiveUp────► failed     (5xx, or retries exhausted)
//	   │                  │ ├──Withhold──► withheld
//	   │                  │ ├──Dedup─────► duplicate
//	   │                  │ ├──DryRun────► dry-run
//	   │                  │ └──MarkSentElsewhere──► sent | duplicate (a cluster's other node sent it)
//	   └──Retry / Wait (rate limit, claim held elsewhere) / lease expiry┘
//	pending ──Cancel──► cancelled
//	failed | withheld | dry-run | cancelled | pending ──Requeue──► pending
type OutboxStatus string

const (
	// OutboxPending waits for its first processing, a retry or the
	// contact's rate limit; NextAttempt says when it is due.
	OutboxPending OutboxStatus = "pending"
	// OutboxSending is claimed: a worker holds it until LeaseUntil. An
	// entry still sending after its lease (the worker could not record an
	// outcome) is claimed again; at start every one is, since the process
	// that held it is gone.
	OutboxSending OutboxStatus = "sending"
	OutboxSent    OutboxStatus = "sent"
	OutboxFailed  OutboxStatus = "failed"
	// OutboxDryRun: rendered but not sent (reporter.enabled is false).
	OutboxDryRun OutboxStatus = "dry-run"
	// OutboxWithheld: policy forbids sending (private, reserved or own
	// source, no contact, channel does not report); Reason says why. The
	// report stays stored and visible.
	OutboxWithheld OutboxStatus = "withheld"
	// OutboxDuplicate: the same incident as DuplicateOf, counted there.
	OutboxDuplicate OutboxStatus = "duplicate"
	// OutboxCancelled: an operator cancelled it before it was sent
	// (POST /api/v1/outbox/{id}/cancel); Requeue undoes it.
	OutboxCancelled OutboxStatus = "cancelled"
)

// OutboxStatuses lists every status, in lifecycle order.
var OutboxStatuses = []OutboxStatus{OutboxPending, OutboxSending, OutboxSent, OutboxFailed, OutboxDryRun, OutboxWithheld, OutboxDuplicate, OutboxCancelled, OutboxWithdrawn}

// OutboxEntry is one report to send to an abuse contact.
type OutboxEntry struct {
	// ID is the report's id.
	ID      ID           `json:"id"`
	Channel string       `json:"channel"`
	Status  OutboxStatus `json:"status"`
	// Contact is the recipients, comma-separated (see Recipients).
	Contact  string `json:"contact,omitempty"`
	Attempts int    `json:"attempts"`
	// Retries counts temporary failures (of a delivery, a contact lookup
	// or the store); the backoff before the next try grows with it.
	Retries   int       `json:"retries,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	Created   time.Time `json:"created"`
	// NextAttempt is when a pending entry is due.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// LeaseUntil is when a sending entry's claim runs out: committed by
	// Claim before any work, so that an entry whose worker could not
	// record the outcome is taken again then, never left hot or stuck.
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	Updated    time.Time `json:"updated,omitzero"`
	// Requeued is when an operator last asked for a retry; the give-up
	// delay counts from it instead of from Created.
	Requeued time.Time `json:"requeued,omitzero"`

	// Reason says why an entry is withheld, waits or failed, in words.
	Reason   string     `json:"reason,omitempty"`
	SourceIP netip.Addr `json:"source_ip,omitzero"`
	// Recipients are the abuse desk addresses; Delivered those that have
	// accepted the message (a retry sends to the rest only).
	Recipients []string `json:"recipients,omitempty"`
	Delivered  []string `json:"delivered,omitempty"`
	// Rejected refused the report permanently (5xx to RCPT or DATA).
	Rejected []string `json:"rejected,omitempty"`
	// Dropped are contact addresses beyond
	// reporter.max_recipients_per_report: not addressed.
	Dropped []string `json:"dropped,omitempty"`
	// ContactSource says where the contact came from: static, dns:<zone>,
	// rdap or partners.
	ContactSource string `json:"contact_source,omitempty"`
	// Fingerprint identifies the incident (source and evidence) for
	// de-duplication; Count is how many received reports this one stands
	// for (itself and its duplicates).
	Fingerprint string `json:"fingerprint,omitempty"`
	Count       int    `json:"count,omitempty"`
	DuplicateOf ID     `json:"duplicate_of,omitzero"`
	// Format, MessageID, Subject and Preview describe the rendered
	// message (Preview: its header and text summary, without evidence);
	// the full message is OutboxMail(ID) while it is kept.
	Format       string `json:"format,omitempty"`
	MessageID    string `json:"message_id,omitempty"`
	Subject      string `json:"subject,omitempty"`
	Preview      string `json:"preview,omitempty"`
	RenderedSize int    `json:"rendered_size,omitempty"`
	// Transmitted is set (durably) just before the final "." of DATA: a
	// crash after it leaves the desk's answer unknown.
	Transmitted bool `json:"transmitted,omitempty"`
	// Resent counts deliveries repeated after such a crash, with the same
	// Message-ID so that the desk can recognise them.
	Resent int       `json:"resent,omitempty"`
	SentAt time.Time `json:"sent_at,omitzero"`
	// SentBy is the cluster node that sent the report (or, for a
	// duplicate, the report it stands for) when that was another node.
	SentBy string `json:"sent_by,omitempty"`
	// Reply is the desk's final reply text.
	Reply string `json:"reply,omitempty"`
	// DataDeleted: the channel does not store, and the report and its
	// evidence were deleted after delivery.
	DataDeleted bool `json:"data_deleted,omitempty"`
}

// due is when a pending entry should be processed, or a sending one's
// lease runs out.
func (e *OutboxEntry) due() time.Time {
	if e.Status == OutboxSending {
		return e.LeaseUntil
	}
	if !e.NextAttempt.IsZero() {
		return e.NextAttempt
	}
	return e.Created
}

// indexed says whether e belongs in the due index: pending entries, and
// sending ones with a lease (an entry claimed by an older binary has none;
// it is released at start).
func (e *OutboxEntry) indexed() bool {
	return e.Status == OutboxPending || (e.Status == OutboxSending && !e.LeaseUntil.IsZero())
}

func dueKey(t time.Time, id ID) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 24), uint64(max(t.UnixNano(), 0)))
	return append(k, id[:]...)
}

func putOutbox(tx *bbolt.Tx, e *OutboxEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding outbox entry: %w", err)
	}
	return putOutboxEncoded(tx, e, b)
}

// putOutboxEncoded is putOutbox with e already encoded as b (Put encodes
// before it takes the writer).
func putOutboxEncoded(tx *bbolt.Tx, e *OutboxEntry, b []byte) error {
	ob := tx.Bucket(bucketOutbox)
	due := tx.Bucket(bucketOutboxDue)
	if old := ob.Get(e.ID[:]); old != nil {
		var prev OutboxEntry
		if json.Unmarshal(old, &prev) == nil && prev.indexed() {
			if err := due.Delete(dueKey(prev.due(), prev.ID)); err != nil {
				return fmt.Errorf("updating outbox index: %w", err)
			}
		}
	}
	if err := ob.Put(e.ID[:], b); err != nil {
		return fmt.Errorf("storing outbox entry: %w", err)
	}
	if e.indexed() {
		if err := due.Put(dueKey(e.due(), e.ID), nil); err != nil {
			return fmt.Errorf("indexing outbox entry: %w", err)
		}
	}
	return nil
}

// PutOutboxTx stores e inside a transaction of Commit, keeping the due
// index in step.
func PutOutboxTx(tx *bbolt.Tx, e *OutboxEntry) error { return putOutbox(tx, e) }

// GetOutboxTx reads entry id inside a transaction; ErrNotFound when absent.
func GetOutboxTx(tx *bbolt.Tx, id ID) (*OutboxEntry, error) {
	v := tx.Bucket(bucketOutbox).Get(id[:])
	if v == nil {
		return nil, ErrNotFound
	}
	var e OutboxEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("decoding outbox entry %s: %w", id, err)
	}
	return &e, nil
}

// GetOutbox returns entry id.
func (s *Store) GetOutbox(id ID) (*OutboxEntry, error) {
	var e *OutboxEntry
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		e, err = GetOutboxTx(tx, id)
		return err
	})
	return e, err
}

// updateOutbox reads entry id, lets fn change it and stores it, in one
// durable transaction. fn may run more than once (see Commit) and must
// only change e and use tx. Callers outside this package go through the
// named transitions of outbox_state.go.
func (s *Store) updateOutbox(id ID, fn func(tx *bbolt.Tx, e *OutboxEntry) error) (*OutboxEntry, error) {
	var out *OutboxEntry
	err := s.Commit(func(tx *bbolt.Tx) error {
		e, err := GetOutboxTx(tx, id)
		if err != nil {
			return err
		}
		if err := fn(tx, e); err != nil {
			return err
		}
		out = e
		return putOutbox(tx, e)
	})
	return out, err
}

// DueOutbox returns up to limit entries due at now, earliest first:
// pending ones whose NextAttempt has come and sending ones whose lease ran
// out. It also returns when the next one not yet due is due (zero when
// none). Index keys whose entry is gone (retention) or has moved on are
// removed; a failure to remove them is not an error, since they are
// skipped anyway and removed by the next successful call.
func (s *Store) DueOutbox(now time.Time, limit int) ([]OutboxEntry, time.Time, error) {
	var (
		out   []OutboxEntry
		next  time.Time
		stale [][]byte
	)
	end := uint64(max(now.UnixNano(), 0))
	err := s.db.View(func(tx *bbolt.Tx) error {
		ob := tx.Bucket(bucketOutbox)
		c := tx.Bucket(bucketOutboxDue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 24 {
				stale = append(stale, append([]byte(nil), k...))
				continue
			}
			at := binary.BigEndian.Uint64(k[:8])
			if at > end {
				next = time.Unix(0, int64(at))
				return nil
			}
			if len(out) == limit {
				next = now
				return nil
			}
			v := ob.Get(k[8:])
			var e OutboxEntry
			if v == nil || json.Unmarshal(v, &e) != nil || !e.indexed() || !bytes.Equal(dueKey(e.due(), e.ID), k) {
				stale = append(stale, append([]byte(nil), k...))
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err == nil && len(stale) > 0 {
		// Best effort: with the disk full this fails, and the due entries
		// must still be returned so that their claims report the error.
		_ = s.Commit(func(tx *bbolt.Tx) error {
			due := tx.Bucket(bucketOutboxDue)
			for _, k := range stale {
				if err := due.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return out, next, err
}

// OutboxByStatus returns every entry with status, oldest first (used at
// start to find entries left in OutboxSending by a crash).
func (s *Store) OutboxByStatus(status OutboxStatus) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var e OutboxEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decoding outbox entry %x: %w", k, err)
			}
			if e.Status == status {
				out = append(out, e)
			}
			return nil
		})
	})
	return out, err
}

// PutOutboxMailTx stores the rendered message of entry id.
func PutOutboxMailTx(tx *bbolt.Tx, id ID, raw []byte) error {
	if err := tx.Bucket(bucketOutboxMail).Put(id[:], raw); err != nil {
		return fmt.Errorf("storing rendered report: %w", err)
	}
	return nil
}

// OutboxMail returns a copy of the rendered message of entry id.
func (s *Store) OutboxMail(id ID) ([]byte, error) {
	var raw []byte
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketOutboxMail).Get(id[:])
		if v == nil {
			return ErrNotFound
		}
		raw = append([]byte(nil), v...)
		return nil
	})
	return raw, err
}

// ForgetReportTx deletes the report of id, its source index, the message
// record, its bytes (the evidence) and the rendered outbound message,
// keeping the outbox entry and the channel index (so that retention still
// finds the entry). For channels whose uses lack store, after delivery.
func ForgetReportTx(tx *bbolt.Tx, id ID) error {
	if err := deleteRecord(tx, id[:]); err != nil {
		return fmt.Errorf("deleting delivered report data: %w", err)
	}
	if err := tx.Bucket(bucketOutboxMail).Delete(id[:]); err != nil {
		return fmt.Errorf("deleting delivered report data: %w", err)
	}
	return nil
}

type dedupRecord struct {
	ID ID        `json:"id"`
	At time.Time `json:"at"`
}

// DedupTx records fingerprint fp for entry id at now, unless an entry
// recorded it within window before now and still exists: then it returns
// that entry's id and true.
func DedupTx(tx *bbolt.Tx, fp string, id ID, now time.Time, window time.Duration) (ID, bool, error) {
	b := tx.Bucket(bucketOutboxDedup)
	if v := b.Get([]byte(fp)); v != nil {
		var r dedupRecord
		if json.Unmarshal(v, &r) == nil && r.ID != id && now.Sub(r.At) < window &&
			tx.Bucket(bucketOutbox).Get(r.ID[:]) != nil {
			return r.ID, true, nil
		}
	}
	rec, _ := json.Marshal(dedupRecord{ID: id, At: now})
	if err := b.Put([]byte(fp), rec); err != nil {
		return ID{}, false, fmt.Errorf("recording report fingerprint: %w", err)
	}
	return id, false, nil
}

// RateTakeTx counts one report to contact at now if fewer than perHour
// were counted in the hour before now, and returns true. Otherwise it
// returns false and when the next slot frees.
func RateTakeTx(tx *bbolt.Tx, contact string, now time.Time, perHour int) (bool, time.Time, error) {
	b := tx.Bucket(bucketOutboxRate)
	var times []time.Time
	if v := b.Get([]byte(contact)); v != nil {
		_ = json.Unmarshal(v, &times)
	}
	kept := times[:0]
	for _, t := range times {
		if now.Sub(t) < time.Hour {
			kept = append(kept, t)
		}
	}
	if len(kept) >= perHour {
		return false, kept[len(kept)-perHour].Add(time.Hour), nil
	}
	kept = append(kept, now)
	v, _ := json.Marshal(kept)
	if err := b.Put([]byte(contact), v); err != nil {
		return false, time.Time{}, fmt.Errorf("counting report to contact: %w", err)
	}
	return true, time.Time{}, nil
}

// CachedContact is one cached abuse-contact lookup. An empty Emails is a
// negative answer (nobody found).
type CachedContact struct {
	Emails  []string  `json:"emails,omitempty"`
	Source  string    `json:"source,omitempty"`
	Expires time.Time `json:"expires"`
}

// Contact returns the cached lookup for key if it has not expired at now.
func (s *Store) Contact(key string, now time.Time) (*CachedContact, bool, error) {
	var (
		c  CachedContact
		ok bool
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketContacts).Get([]byte(key))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &c); err != nil {
			return nil // unreadable: look up again
		}
		ok = now.Before(c.Expires)
		return nil
	})
	if !ok {
		return nil, false, err
	}
	return &c, true, err
}

// PutContact caches a lookup under key.
func (s *Store) PutContact(key string, c *CachedContact) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return s.Commit(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketContacts).Put([]byte(key), v)
	})
}

// PruneOutboxMail deletes rendered messages whose outbox entry is gone
// (retention swept it): a rendered report holds the evidence, which must
// not outlive it. It returns how many it deleted.
func (s *Store) PruneOutboxMail() (int, error) {
	n := 0
	err := s.Commit(func(tx *bbolt.Tx) error {
		n = 0
		ob := tx.Bucket(bucketOutbox)
		var gone [][]byte
		c := tx.Bucket(bucketOutboxMail).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if ob.Get(k) == nil {
				gone = append(gone, append([]byte(nil), k...))
			}
		}
		for _, k := range gone {
			if err := tx.Bucket(bucketOutboxMail).Delete(k); err != nil {
				return err
			}
		}
		n = len(gone)
		return nil
	})
	return n, err
}

// Outbox returns up to limit entries with the given status (all when
// empty), newest first, older than before when it is set, and the cursor
// of the next page.
func (s *Store) Outbox(status OutboxStatus, before ID, limit int) ([]OutboxEntry, ID, error) {
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
			if json.Unmarshal(v, &e) == nil && (e.Status == OutboxPending || e.Status == OutboxSending) {
				n++
			}
			return nil
		})
	})
	return n, err
}
