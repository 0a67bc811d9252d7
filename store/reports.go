package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
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
			return errors.New("store: empty entry")
		}
		if e.Message != nil && e.Report != nil && e.Message.ID != e.Report.ID {
			return errors.New("store: message and report ids differ")
		}
		p := &ps[i]
		p.id = e.id()
		var err error
		if m := e.Message; m != nil {
			p.given |= givesMessage
			if p.rec.msg, err = json.Marshal(m); err != nil {
				return fmt.Errorf("encoding message record: %w", err)
			}
			if !m.Withheld {
				p.rec.raw, p.rec.hasRaw = e.Raw, true
			}
			if m.Status == StatusQuarantined {
				q := &QuarantineEntry{Key: m.ID.String(), Reason: m.Reason, At: m.Envelope.ReceivedAt}
				if p.quarantine, err = json.Marshal(q); err != nil {
					return fmt.Errorf("encoding quarantine entry: %w", err)
				}
				p.quarantineK = []byte(q.Key)
			}
		}
		if r := e.Report; r != nil {
			p.given |= givesReport
			if p.rec.rep, err = encodeReport(r); err != nil {
				return fmt.Errorf("encoding report: %w", err)
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
				return fmt.Errorf("encoding outbox entry: %w", err)
			}
		}
		p.value = p.rec.encode()
		p.channelKey = channelKey(e.channel(), p.id)
	}
	return s.Commit(func(tx *bbolt.Tx) error {
		records := tx.Bucket(bucketRecords)
		records.FillPercent = appendFill
		byChannel := tx.Bucket(bucketByChannel)
		byChannel.FillPercent = appendFill
		quarantine := tx.Bucket(bucketQuarantine)
		quarantine.FillPercent = appendFill
		stats := statsDelta{}
		for i := range ps {
			p := &ps[i]
			value := p.value
			// What this entry adds to the hourly counters: all it gives,
			// unless the stored record had it already.
			var c counts
			if p.given&givesMessage != 0 {
				c.messages = 1
			}
			if p.given&givesReport != 0 {
				c.reports = 1
			}
			if p.quarantine != nil {
				c.quarantined = 1
			}
			if old := records.Get(p.id[:]); old != nil {
				// Parts not given stay as stored.
				rec, err := decodeRecord(old)
				if err != nil {
					return fmt.Errorf("record %s: %w", p.id, err)
				}
				if len(rec.msg) > 0 {
					c.messages = 0
					if c.quarantined == 1 && bytes.Contains(rec.msg, quarantinedJSON) {
						c.quarantined = 0
					}
				}
				if len(rec.rep) > 0 {
					c.reports = 0
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
			if c != (counts{}) {
				stats.add(IDTime(p.id), entries[i].channel(), c)
			}
		}
		return stats.apply(tx)
	})
}

// quarantinedJSON is how a quarantined message record's status reads in
// its JSON (encoding/json writes no spaces): Put's test whether a record
// it overwrites was counted as quarantined already.
var quarantinedJSON = []byte(`"status":"quarantined"`)

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
	// Method selects reports whose origin was found this way: the
	// predicate of the document's "origin:" tag (xarf/convert.go:
	// source-ip, smtp-peer, received-chain, jmrp-subject, subject, …).
	// A method also matches its inferred form ("origin:inferred-"+Method,
	// an origin taken from a forwarded message's Received chain);
	// "inferred-received-chain" matches only that.
	Method string
	// EvidenceSource selects the document's evidence_source (spamtrap,
	// user_complaint, …).
	EvidenceSource string
	// Text selects reports whose document's text fields contain it,
	// ignoring case: see docText for the fields. Never the evidence.
	Text string
	// Examine bounds the records one call examines when Method,
	// EvidenceSource or Text is set (ScanBound when 0): those filters
	// read each document, and a rare match must not make one request
	// walk the whole store. A call that reaches the bound returns what
	// it found, maybe fewer than Limit or none, with the cursor of the
	// last record examined: the caller continues from there.
	Examine int
}

// ScanBound is how many records one Reports call examines at most when
// it filters on the document (Query.Method, EvidenceSource, Text).
const ScanBound = 10_000

// scans reports whether q filters on the document.
func (q *Query) scans() bool { return q.Method != "" || q.EvidenceSource != "" || q.Text != "" }

// docText is what Query.Text, EvidenceSource and Method read of a XARF
// document: its text fields, never the evidence.
type docText struct {
	ReportID         string   `json:"report_id"`
	SourceIdentifier string   `json:"source_identifier"`
	Category         string   `json:"category"`
	Type             string   `json:"type"`
	EvidenceSource   string   `json:"evidence_source"`
	SMTPFrom         string   `json:"smtp_from"`
	SMTPTo           string   `json:"smtp_to"`
	Subject          string   `json:"subject"`
	SenderName       string   `json:"sender_name"`
	MessageID        string   `json:"message_id"`
	UserAgent        string   `json:"user_agent"`
	Description      string   `json:"description"`
	Tags             []string `json:"tags"`
	Reporter         *contact `json:"reporter"`
	Sender           *contact `json:"sender"`
	SpamIndicators   *struct {
		SuspiciousLinks []string `json:"suspicious_links"`
	} `json:"spam_indicators"`
}

type contact struct {
	Org     string `json:"org"`
	Contact string `json:"contact"`
	Domain  string `json:"domain"`
}

// docFilter is the document part of a Query, prepared once per call.
type docFilter struct {
	method, evsrc, text string // text lower-cased
	tag, inferred       []byte // "origin:"+method, "origin:inferred-"+method
	// literal: text is printable ASCII that JSON never has to escape,
	// so it occurs in a field only if it occurs in the document's bytes
	// (see absent); buf is absent's scratch.
	literal bool
	buf     []byte
}

func newDocFilter(q *Query) *docFilter {
	if !q.scans() {
		return nil
	}
	f := &docFilter{method: q.Method, evsrc: q.EvidenceSource, text: strings.ToLower(q.Text)}
	f.literal = f.text != "" && !strings.ContainsFunc(f.text, func(r rune) bool {
		return r < 0x20 || r >= 0x7f || r == '"' || r == '\\' || r == '/'
	})
	if f.method != "" {
		f.tag = []byte("origin:" + f.method)
		f.inferred = []byte("origin:inferred-" + f.method)
	}
	return f
}

// absent reports, without decoding, that the text filter cannot match
// xarf: decoding every document of a scan is what made a scan slow (see
// BenchmarkReportsTextScan). It judges only what it can judge exactly: a
// literal text (printable ASCII that JSON never escapes) and a document
// without \u escapes (which can spell any character) nor the two
// non-ASCII letters that lower-case to ASCII ones (U+0130 'İ' and
// U+212A KELVIN SIGN). Then every character of a match in a lower-cased
// field is an ASCII letter or sign written as itself in the bytes, so it
// matches the bytes lower-cased as ASCII. Anything else is decoded.
func (f *docFilter) absent(xarf []byte) bool {
	if !f.literal || bytes.Contains(xarf, []byte(`\u`)) ||
		bytes.Contains(xarf, []byte("\u0130")) || bytes.Contains(xarf, []byte("\u212a")) {
		return false
	}
	f.buf = append(f.buf[:0], xarf...)
	for i, c := range f.buf {
		if 'A' <= c && c <= 'Z' {
			f.buf[i] = c + 'a' - 'A'
		}
	}
	return !bytes.Contains(f.buf, []byte(f.text))
}

// match reports whether the stored document xarf (its evidence payload
// cut out, usually) passes the filter.
func (f *docFilter) match(xarf []byte) bool {
	if f.tag != nil && !bytes.Contains(xarf, f.tag) && !bytes.Contains(xarf, f.inferred) {
		return false // tags are plain ASCII: absent from the bytes, absent
	}
	if f.absent(xarf) {
		return false
	}
	var d docText
	if json.Unmarshal(xarf, &d) != nil {
		return false
	}
	if f.evsrc != "" && d.EvidenceSource != f.evsrc {
		return false
	}
	if f.method != "" && !slices.ContainsFunc(d.Tags, func(t string) bool {
		return t == string(f.tag) || t == string(f.inferred)
	}) {
		return false
	}
	if f.text == "" {
		return true
	}
	has := func(s string) bool { return s != "" && strings.Contains(strings.ToLower(s), f.text) }
	for _, s := range []string{d.ReportID, d.SourceIdentifier, d.Category, d.Type, d.EvidenceSource, d.SMTPFrom, d.SMTPTo,
		d.Subject, d.SenderName, d.MessageID, d.UserAgent, d.Description} {
		if has(s) {
			return true
		}
	}
	for _, c := range []*contact{d.Reporter, d.Sender} {
		if c != nil && (has(c.Org) || has(c.Contact) || has(c.Domain)) {
			return true
		}
	}
	if slices.ContainsFunc(d.Tags, has) {
		return true
	}
	return d.SpamIndicators != nil && slices.ContainsFunc(d.SpamIndicators.SuspiciousLinks, has)
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
	filter := newDocFilter(&q)
	examine := q.Examine
	if examine <= 0 {
		examine = ScanBound
	}
	var (
		out      []Report
		next     ID
		last     ID // the last record examined
		examined int
	)
	err := s.view(func(tx *bbolt.Tx) error {
		take := func(id []byte) (bool, error) {
			if filter != nil {
				if examined == examine {
					// The bound, with more to examine: the caller
					// continues below the last record examined.
					next = last
					return false, nil
				}
				examined++
				copy(last[:], id)
			}
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
			if filter != nil && !filter.match(rec.xarf) {
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
