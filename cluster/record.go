package cluster

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"slices"

	"github.com/xarfd/xarfd/store"
)

// A record is what one accepted message publishes: the store entries of
// its deliveries (one per channel it went to), which every node applies
// to its store in one transaction, as the accepting node would have.
//
// Layout (version 1), integers as unsigned varints:
//
//	"XRC" 0x01                       magic and version
//	crc32c                           4 bytes big-endian, of all that follows
//	count                            entries, at least 1
//	per entry, seven fields, each a length+1 (0 = absent) and the bytes:
//	  message   store.Message as JSON
//	  raw       the stored (redacted) message bytes; absent when withheld
//	  report    the report's id, channel, source IP and via, as JSON
//	  xarf      the XARF document, its evidence payload cut out when it
//	            is base64 of raw (the message then travels once)
//	  cut       the position of the cut as a varint; absent when uncut
//	  outbox    store.OutboxEntry as JSON
//	  retract   store.Retraction as JSON (a not-spam report's withdrawal)
//
// Version 2 carries identical message bytes once: a message that went to
// several channels holds one copy per channel in version 1, the same
// bytes wherever no channel's redaction changed them.
//
//	"XRC" 0x02
//	crc32c
//	blobs                            distinct message bytes, then each
//	                                 as a length and the bytes
//	count                            entries, at least 1
//	per entry, the seven fields of version 1, except that raw holds
//	the index of the entry's bytes among the blobs (a varint); every
//	blob is some entry's
//
// Every node decodes both. A node writes version 2 only when it saves
// bytes, and only once every node reads it (Node.Commit; nodes upgrade
// one by one), unless version 1 would not fit in a NATS message at all.
// A decoder meeting another version refuses the record rather than
// guessing: the node logs it and must be upgraded (docs/cluster.md).
const (
	recordVersion       = 1
	recordVersionShared = 2
)

var recordMagic = [4]byte{'X', 'R', 'C', recordVersion}

// maxEntries bounds what one record may claim to hold: a message goes to
// at most as many channels as it has recipients.
const maxEntries = 1024

// ErrRecord wraps every reason a record cannot be decoded.
var ErrRecord = errors.New("cluster: bad record")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// reportMeta is a report without its document.
type reportMeta struct {
	ID       store.ID   `json:"id"`
	Channel  string     `json:"channel"`
	SourceIP netip.Addr `json:"source_ip,omitzero"`
	Via      string     `json:"via"`
}

// EncodeRecord encodes entries as one record of version 1, the layout
// every node reads.
func EncodeRecord(entries []store.Entry) ([]byte, error) { return encodeRecord(entries, false) }

// EncodeRecordShared encodes entries as one record of version 2 when
// two of them hold the same message bytes (which then travel once), else
// as EncodeRecord.
func EncodeRecordShared(entries []store.Entry) ([]byte, error) { return encodeRecord(entries, true) }

func encodeRecord(entries []store.Entry, share bool) ([]byte, error) {
	if len(entries) == 0 || len(entries) > maxEntries {
		return nil, fmt.Errorf("encoding record: %d entries", len(entries))
	}
	// blob[i] is the index of entry i's bytes among blobs (-1: none).
	var blobs [][]byte
	blob := make([]int, len(entries))
	withBytes := 0
	for i, e := range entries {
		blob[i] = -1
		if e.Message == nil || e.Message.Withheld {
			continue
		}
		withBytes++
		j := slices.IndexFunc(blobs, func(b []byte) bool { return bytes.Equal(b, e.Raw) })
		if j < 0 {
			j = len(blobs)
			blobs = append(blobs, e.Raw)
		}
		blob[i] = j
	}
	shared := share && len(blobs) < withBytes
	size := 16
	for _, e := range entries {
		size += 256
		if !shared {
			size += len(e.Raw)
		}
		if e.Report != nil {
			size += len(e.Report.XARF)
		}
	}
	if shared {
		for _, p := range blobs {
			size += len(p) + binary.MaxVarintLen64
		}
	}
	b := make([]byte, 8, size)
	copy(b, recordMagic[:])
	if shared {
		b[3] = recordVersionShared
		b = binary.AppendUvarint(b, uint64(len(blobs)))
		for _, p := range blobs {
			b = binary.AppendUvarint(b, uint64(len(p)))
			b = append(b, p...)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(entries)))
	field := func(present bool, p []byte) {
		if !present {
			b = append(b, 0)
			return
		}
		b = binary.AppendUvarint(b, uint64(len(p))+1)
		b = append(b, p...)
	}
	for i, e := range entries {
		if e.Message == nil && e.Report == nil {
			return nil, fmt.Errorf("encoding record: entry %d is empty", i)
		}
		var msg, rep, outbox, retract []byte
		var err error
		if e.Message != nil {
			if msg, err = json.Marshal(e.Message); err != nil {
				return nil, fmt.Errorf("encoding record: message: %w", err)
			}
		}
		hasRaw := blob[i] >= 0
		doc, at, cut := []byte(nil), 0, false
		if r := e.Report; r != nil {
			if rep, err = json.Marshal(reportMeta{ID: r.ID, Channel: r.Channel, SourceIP: r.SourceIP, Via: r.Via}); err != nil {
				return nil, fmt.Errorf("encoding record: report: %w", err)
			}
			doc = r.XARF
			if hasRaw {
				doc, at, cut = store.CutEvidence(r.XARF, e.Raw)
			}
		}
		if e.Outbox != nil {
			if outbox, err = json.Marshal(e.Outbox); err != nil {
				return nil, fmt.Errorf("encoding record: outbox entry: %w", err)
			}
		}
		if e.Retract != nil {
			if retract, err = json.Marshal(e.Retract); err != nil {
				return nil, fmt.Errorf("encoding record: retraction: %w", err)
			}
		}
		field(msg != nil, msg)
		if shared {
			field(hasRaw, binary.AppendUvarint(nil, uint64(max(blob[i], 0))))
		} else {
			field(hasRaw, e.Raw)
		}
		field(rep != nil, rep)
		field(rep != nil, doc)
		field(cut, binary.AppendUvarint(nil, uint64(at)))
		field(outbox != nil, outbox)
		field(retract != nil, retract)
	}
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], crcTable))
	return b, nil
}

// DecodeRecord decodes a record. The entries' byte fields alias b.
func DecodeRecord(b []byte) ([]store.Entry, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %d bytes", ErrRecord, len(b))
	}
	if [3]byte(b[:3]) != [3]byte(recordMagic[:3]) {
		return nil, fmt.Errorf("%w: not a record", ErrRecord)
	}
	if b[3] != recordVersion && b[3] != recordVersionShared {
		return nil, fmt.Errorf("%w: version %d, this node reads %d and %d (upgrade it)", ErrRecord, b[3], recordVersion, recordVersionShared)
	}
	if sum := crc32.Checksum(b[8:], crcTable); sum != binary.BigEndian.Uint32(b[4:8]) {
		return nil, fmt.Errorf("%w: checksum does not hold", ErrRecord)
	}
	d := decoder{b: b[8:]}
	if b[3] == recordVersionShared {
		nb := d.uvarint()
		if d.err == nil && nb > maxEntries {
			return nil, fmt.Errorf("%w: %d message blobs", ErrRecord, nb)
		}
		d.blobs = make([][]byte, 0, min(nb, 16))
		for i := uint64(0); i < nb && d.err == nil; i++ {
			if p, ok := d.bytes(d.uvarint()); ok {
				d.blobs = append(d.blobs, p)
			}
		}
		d.used = make([]bool, len(d.blobs))
		d.shared = true
	}
	n := d.uvarint()
	if d.err == nil && (n == 0 || n > maxEntries) {
		return nil, fmt.Errorf("%w: %d entries", ErrRecord, n)
	}
	entries := make([]store.Entry, 0, min(n, 16))
	for i := uint64(0); i < n && d.err == nil; i++ {
		e, err := d.entry()
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", ErrRecord, i, err)
		}
		entries = append(entries, e)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRecord, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", ErrRecord, len(d.b))
	}
	if slices.Contains(d.used, false) {
		return nil, fmt.Errorf("%w: message bytes no entry holds", ErrRecord)
	}
	return entries, nil
}

type decoder struct {
	b   []byte
	err error
	// shared: version 2, where an entry's raw field is an index into
	// blobs; used marks the blobs an entry took.
	shared bool
	blobs  [][]byte
	used   []bool
}

var errShort = errors.New("truncated")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

// field returns a field's bytes and whether it is present.
func (d *decoder) field() ([]byte, bool) {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil, false
	}
	return d.bytes(n - 1)
}

// bytes takes the next n bytes.
func (d *decoder) bytes(n uint64) ([]byte, bool) {
	if d.err != nil {
		return nil, false
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil, false
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p, true
}

// raw resolves a version 2 raw field to the blob it names.
func (d *decoder) raw(field []byte) ([]byte, error) {
	i, n := binary.Uvarint(field)
	if n <= 0 || n != len(field) || i >= uint64(len(d.blobs)) {
		return nil, errors.New("bad message bytes index")
	}
	d.used[i] = true
	return d.blobs[i], nil
}

func (d *decoder) entry() (store.Entry, error) {
	var e store.Entry
	msg, hasMsg := d.field()
	raw, hasRaw := d.field()
	rep, hasRep := d.field()
	doc, hasDoc := d.field()
	cutField, cut := d.field()
	outbox, hasOutbox := d.field()
	retract, hasRetract := d.field()
	if d.err != nil {
		return e, d.err
	}
	if hasRaw && d.shared {
		var err error
		if raw, err = d.raw(raw); err != nil {
			return e, err
		}
	}
	if !hasMsg && !hasRep {
		return e, errors.New("neither message nor report")
	}
	if hasMsg {
		e.Message = new(store.Message)
		if err := json.Unmarshal(msg, e.Message); err != nil {
			return e, fmt.Errorf("message: %w", err)
		}
		if hasRaw == e.Message.Withheld {
			return e, errors.New("message bytes present for a withheld message, or missing")
		}
		if hasRaw {
			e.Raw = raw
		}
	} else if hasRaw {
		return e, errors.New("message bytes without a message")
	}
	if hasRep != hasDoc {
		return e, errors.New("report without document, or document without report")
	}
	if hasRep {
		var m reportMeta
		if err := json.Unmarshal(rep, &m); err != nil {
			return e, fmt.Errorf("report: %w", err)
		}
		if e.Message != nil && e.Message.ID != m.ID {
			return e, errors.New("message and report ids differ")
		}
		e.Report = &store.Report{ID: m.ID, Channel: m.Channel, SourceIP: m.SourceIP, Via: m.Via, XARF: doc}
		if cut {
			at, n := binary.Uvarint(cutField)
			if n <= 0 || n != len(cutField) || !hasRaw || at > uint64(len(doc)) {
				return e, errors.New("bad evidence position")
			}
			full, err := store.PasteEvidence(doc, int(at), raw)
			if err != nil {
				return e, err
			}
			e.Report.XARF = full
		}
	} else if cut {
		return e, errors.New("evidence position without a report")
	}
	if hasOutbox {
		e.Outbox = new(store.OutboxEntry)
		if err := json.Unmarshal(outbox, e.Outbox); err != nil {
			return e, fmt.Errorf("outbox entry: %w", err)
		}
		if id := entryID(&e); e.Outbox.ID != id {
			return e, errors.New("outbox entry of another id")
		}
	}
	if hasRetract {
		e.Retract = new(store.Retraction)
		if err := json.Unmarshal(retract, e.Retract); err != nil {
			return e, fmt.Errorf("retraction: %w", err)
		}
		if e.Retract.ID != entryID(&e) {
			return e, errors.New("retraction of another id")
		}
	}
	return e, nil
}

func entryID(e *store.Entry) store.ID {
	if e.Message != nil {
		return e.Message.ID
	}
	return e.Report.ID
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, crcTable) }
