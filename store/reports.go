package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/bbolt"
)

var (
	// bucketByIP indexes reports by source: key = 16-byte IP || id.
	bucketByIP = []byte("by_ip")
)

// Report is one stored XARF report. Its id is the id of the message it
// came from (a message yields at most one report per channel), so the
// message's stored (redacted) bytes are its evidence.
type Report struct {
	ID      ID     `json:"id"`
	Channel string `json:"channel"`
	// SourceIP is the report's source_identifier when it is an address.
	SourceIP netip.Addr `json:"source_ip,omitzero"`
	// Via is "smtp" or "http" (a submitted XARF document).
	Via string `json:"via"`
	// XARF is the document exactly as served by the API.
	XARF json.RawMessage `json:"xarf"`
}

// Entry is what one delivery stores: a message record with its bytes, a
// report, or both (same id). Put stores a batch of them atomically.
type Entry struct {
	Message *Message
	Raw     []byte
	Report  *Report
	// Outbox, when set, queues the report for the reporter.
	Outbox *OutboxEntry
	// Retract, set on a not-spam report's entry, is the withdrawal its
	// accepting node made before storing it. Put ignores it; a cluster
	// node that applies the entry from the stream makes the same
	// withdrawal in its own store.
	Retract *Retraction
}

func (e *Entry) id() ID {
	if e.Message != nil {
		return e.Message.ID
	}
	return e.Report.ID
}

func (e *Entry) channel() string {
	if e.Message != nil {
		return e.Message.Channel
	}
	return e.Report.Channel
}

// Put stores every entry in one durable transaction: all of them, or
// none. It returns after the transaction has been fsynced. An entry with
// only a message, or only a report, keeps the other part of a record
// already stored under its id.
func (s *Store) Put(entries []Entry) error {
	_, err := s.put(entries, false)
	return err
}

// PutNew stores, in one durable transaction, every entry whose id the
// store does not hold yet, and leaves the others as they are (their
// record, indexes and outbox entry, whatever became of it since). It
// reports which entries it stored. Applying the same entries again is
// a no-op: this is how a cluster node applies the replicated stream,
// which delivers a record at least once, and its own records a second
// time after it stored them on accepting.
func (s *Store) PutNew(entries []Entry) ([]bool, error) {
	return s.put(entries, true)
}

// Held reports, in one read transaction, which of ids have a record: a
// cluster node skips the write transaction (and its fsync) for a batch
// of the stream that holds only what it stored already, such as its own
// records.
func (s *Store) Held(ids []ID) ([]bool, error) {
	held := make([]bool, len(ids))
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for i, id := range ids {
			held[i] = b.Get(id[:]) != nil
		}
		return nil
	})
	return held, err
}

func (s *Store) put(entries []Entry, onlyNew bool) ([]bool, error) {
	// Everything that does not need the transaction is done before it:
	// the commit holds bbolt's single writer, and every microsecond in it
	// is added to every SMTP session waiting for its 250.
	type prepared struct {
		id          ID
		rec         record // the parts this entry gives
		given       byte   // which: givesMessage, givesReport
		value       []byte // rec encoded: the record of a new id
		channelKey  []byte
		ipKey       []byte
		quarantine  []byte // the quarantine entry of a quarantined message
		quarantineK []byte
		outbox      []byte // the outbox entry, encoded
	}
	const (
		givesMessage = 1 << iota
		givesReport
	)
	ps := make([]prepared, len(entries))
	for i, e := range entries {
		if e.Message == nil && e.Report == nil {
			return nil, errors.New("store: empty entry")
		}
		if e.Message != nil && e.Report != nil && e.Message.ID != e.Report.ID {
			return nil, errors.New("store: message and report ids differ")
		}
		p := &ps[i]
		p.id = e.id()
		var err error
		if m := e.Message; m != nil {
			p.given |= givesMessage
			if p.rec.msg, err = json.Marshal(m); err != nil {
				return nil, fmt.Errorf("encoding message record: %w", err)
			}
			if !m.Withheld {
				p.rec.raw, p.rec.hasRaw = e.Raw, true
			}
			if m.Status == StatusQuarantined {
				q := &QuarantineEntry{Key: m.ID.String(), Reason: m.Reason, At: m.Envelope.ReceivedAt}
				if p.quarantine, err = json.Marshal(q); err != nil {
					return nil, fmt.Errorf("encoding quarantine entry: %w", err)
				}
				p.quarantineK = []byte(q.Key)
			}
		}
		if r := e.Report; r != nil {
			p.given |= givesReport
			if p.rec.rep, err = encodeReport(r); err != nil {
				return nil, fmt.Errorf("encoding report: %w", err)
			}
			p.rec.xarf = r.XARF
			if p.rec.hasRaw {
				p.rec.xarf, p.rec.cutAt, p.rec.cut = cutEvidence(r.XARF, p.rec.raw)
			}
			if r.SourceIP.IsValid() {
				p.ipKey = ipKey(r.SourceIP, r.ID)
			}
		}
		if e.Outbox != nil {
			if p.outbox, err = json.Marshal(e.Outbox); err != nil {
				return nil, fmt.Errorf("encoding outbox entry: %w", err)
			}
		}
		p.value = p.rec.encode()
		p.channelKey = channelKey(e.channel(), p.id)
	}
	stored := make([]bool, len(ps))
	err := s.Commit(func(tx *bbolt.Tx) error {
		clear(stored) // Commit may run this again
		records := tx.Bucket(bucketRecords)
		records.FillPercent = appendFill
		byChannel := tx.Bucket(bucketByChannel)
		byChannel.FillPercent = appendFill
		quarantine := tx.Bucket(bucketQuarantine)
		quarantine.FillPercent = appendFill
		for i := range ps {
			p := &ps[i]
			value := p.value
			old := records.Get(p.id[:])
			if old != nil && onlyNew {
				continue
			}
			stored[i] = true
			if old != nil {
				// Parts not given stay as stored.
				rec, err := decodeRecord(old)
				if err != nil {
					return fmt.Errorf("record %s: %w", p.id, err)
				}
				if p.given&givesMessage != 0 {
					if p.given&givesReport == 0 && rec.cut {
						// The stored report's evidence is the old body:
						// it goes back into the document before the
						// body changes under it.
						rec.xarf, rec.cut = rec.document(), false
					}
					rec.msg, rec.raw, rec.hasRaw = p.rec.msg, p.rec.raw, p.rec.hasRaw
				}
				if p.given&givesReport != 0 {
					rec.rep, rec.xarf, rec.cut, rec.cutAt = p.rec.rep, p.rec.xarf, p.rec.cut, p.rec.cutAt
				}
				value = rec.encode()
			}
			if err := records.Put(p.id[:], value); err != nil {
				return fmt.Errorf("storing record: %w", err)
			}
			if err := byChannel.Put(p.channelKey, nil); err != nil {
				return fmt.Errorf("indexing by channel: %w", err)
			}
			if p.quarantine != nil {
				if err := quarantine.Put(p.quarantineK, p.quarantine); err != nil {
					return fmt.Errorf("quarantining message: %w", err)
				}
			}
			if p.ipKey != nil {
				if err := tx.Bucket(bucketByIP).Put(p.ipKey, nil); err != nil {
					return fmt.Errorf("indexing report by source: %w", err)
				}
			}
			if o := entries[i].Outbox; o != nil {
				if err := putOutboxEncoded(tx, o, p.outbox); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

func ipKey(ip netip.Addr, id ID) []byte {
	a := ip.Unmap().As16()
	return append(a[:], id[:]...)
}

// GetReportMeta returns the report id without its XARF document (XARF is
// nil): what policy needs, without copying the document and putting its
// evidence back.
func (s *Store) GetReportMeta(id ID) (*Report, error) {
	var r *Report
	err := s.viewRecord(id, func(rec *record) error {
		if len(rec.rep) == 0 {
			return ErrNotFound
		}
		var m reportMeta
		if err := json.Unmarshal(rec.rep, &m); err != nil {
			return err
		}
		r = m.report(nil)
		return nil
	})
	return r, err
}

// GetReport returns the report id.
func (s *Store) GetReport(id ID) (*Report, error) {
	var r *Report
	err := s.viewRecord(id, func(rec *record) error {
		if len(rec.rep) == 0 {
			return ErrNotFound
		}
		var err error
		r, err = rec.report()
		return err
	})
	return r, err
}

// Query selects reports, newest first. Every zero field means "any".
type Query struct {
	Channel  string
	SourceIP netip.Addr
	// Since and Until bound the report's id time (its arrival): Since
	// inclusive, Until exclusive.
	Since, Until time.Time
	// Before continues a listing: only ids older than it (the cursor).
	Before ID
	Limit  int
}

// MaxLimit caps one page.
const MaxLimit = 1000

// Reports returns one page of reports matching q, newest first, and the
// cursor of the next page (zero when this is the last).
func (s *Store) Reports(q Query) ([]Report, ID, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		q.Limit = MaxLimit
	}
	// Upper bound on the key: the cursor, or Until as an id prefix.
	upper := maxID
	if !q.Until.IsZero() {
		upper = timeKey(q.Until)
	}
	if q.Before != (ID{}) && bytes.Compare(q.Before[:], upper[:]) < 0 {
		upper = q.Before
	}
	var lower ID
	if !q.Since.IsZero() {
		lower = timeKey(q.Since)
	}
	var (
		out  []Report
		next ID
	)
	err := s.view(func(tx *bbolt.Tx) error {
		take := func(id []byte) (bool, error) {
			rec, ok, err := getRecord(tx, id)
			if err != nil {
				return false, err
			}
			if !ok || len(rec.rep) == 0 {
				return true, nil // a message without report
			}
			var m reportMeta
			if err := json.Unmarshal(rec.rep, &m); err != nil {
				return false, fmt.Errorf("decoding report %x: %w", id, err)
			}
			if q.Channel != "" && m.Channel != q.Channel {
				return true, nil
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].ID
				return false, nil
			}
			out = append(out, *m.report(rec.document()))
			return true, nil
		}
		var (
			c      *bbolt.Cursor
			prefix []byte
		)
		switch {
		case q.SourceIP.IsValid():
			a := q.SourceIP.Unmap().As16()
			prefix = a[:]
			c = tx.Bucket(bucketByIP).Cursor()
		case q.Channel != "":
			prefix = channelPrefix(q.Channel)
			c = tx.Bucket(bucketByChannel).Cursor()
		default:
			c = tx.Bucket(bucketRecords).Cursor()
		}
		start := append(append([]byte(nil), prefix...), upper[:]...)
		k, _ := c.Seek(start)
		if k == nil {
			k, _ = c.Last()
		}
		for ; k != nil; k, _ = c.Prev() {
			if !bytes.HasPrefix(k, prefix) {
				if bytes.Compare(k, prefix) < 0 {
					break
				}
				continue
			}
			id := k[len(prefix):]
			if bytes.Compare(id, upper[:]) >= 0 {
				continue
			}
			if bytes.Compare(id, lower[:]) < 0 {
				break
			}
			more, err := take(id)
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
	return out, next, err
}

var maxID = ID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// timeKey is the smallest id of the millisecond t.
func timeKey(t time.Time) ID {
	var id ID
	ms := uint64(t.UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id
}
