package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// A record is everything stored under one id in the records bucket: the
// message record, the report and the message bytes (the evidence). They
// are written together, read by id and deleted together, so one B+tree
// holds them: every B+tree a commit touches costs page writes on the
// critical path of the 250, and a bucket per kind cost a sixth of the
// commit time (see BenchmarkPutMessageSerial).
//
// The report's XARF document is a part of its own, not a field of the
// report's JSON: encoding/json checks and compacts every byte of an
// embedded json.RawMessage, base64 evidence included, on each write and
// each read, which took a fifth of the CPU of a trap report.
//
// A report's evidence is, nearly always, the stored message itself in
// base64: kept twice, it made a record 2.6 times the size of its message
// (a 6 KB ARF report took 15.5 KB), and every byte is written inside the
// commit. So the payload is cut out of the stored document when it is
// exactly base64 of the stored bytes, and its offset kept; reading the
// document puts it back, byte for byte.
//
// Every record carries a CRC-32C of all its other bytes, checked on every
// read: a flipped bit in a stored message or report is reported as
// ErrDamaged, never served. CRC-32C rather than a cryptographic hash
// because the threat is accidental damage (a bad sector, a torn write, a
// bit flip in RAM or on the bus), not an adversary: whoever can write the
// file can recompute any checksum. It detects every burst of up to 32
// bits and any other damage with probability 1-2^-32, costs 4 bytes per
// record, and runs at memory speed on amd64 and arm64 (SSE4.2 and ARMv8
// CRC instructions): for a 6 KB record, 0.24 µs against 18 µs for sha256
// (measured on the 2-core test machine), on the commit path of every
// message and again on every read.
//
// Layout (all numbers uvarint unless said):
//
//	byte 0      recordVersion
//	byte 1      flags: flagRaw when the message bytes are stored,
//	            flagEvidence when the document's evidence payload was cut
//	bytes 2-5   CRC-32C (Castagnoli), big-endian, of byte 0, byte 1 and
//	            every byte after byte 5
//	len, bytes  message record JSON (empty: a report submitted over HTTP)
//	len, bytes  report record JSON, without the document (empty: no report)
//	len, bytes  the report's XARF document
//	offset      with flagEvidence: where in the document base64 of the
//	            message bytes goes back
//	rest        the message bytes exactly as stored
type record struct {
	msg, rep, xarf []byte
	raw            []byte
	hasRaw         bool
	// cut: the evidence payload was cut out of xarf at offset cutAt.
	cut   bool
	cutAt int
}

const (
	// recordVersion 2 added the checksum (schema 3); version 1 records
	// are only read by the migration.
	recordVersion   = 2
	recordVersionV1 = 1
	recordHeader    = 6 // version, flags, CRC-32C
	recordHeaderV1  = 2
	flagRaw         = 1 << 0
	flagEvidence    = 1 << 1
)

var errBadRecord = fmt.Errorf("%w: the record is truncated or of an unknown version", ErrDamaged)

// errChecksum is a record whose bytes changed after they were written.
var errChecksum = fmt.Errorf("%w: the record's checksum does not match its bytes", ErrDamaged)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSum is the checksum of an encoded version 2 record.
func recordSum(v []byte) uint32 {
	return crc32.Update(crc32.Checksum(v[:2], castagnoli), castagnoli, v[recordHeader:])
}

// DamagedError is a record whose checksum does not hold. It wraps
// ErrDamaged; ID names the record for the log (never for a client).
type DamagedError struct {
	ID  ID
	Err error
}

func (e *DamagedError) Error() string { return "record " + e.ID.String() + ": " + e.Err.Error() }
func (e *DamagedError) Unwrap() error { return e.Err }

func (r *record) encode() []byte {
	n := recordHeader + 4*binary.MaxVarintLen64 + len(r.msg) + len(r.rep) + len(r.xarf) + len(r.raw)
	b := make([]byte, recordHeader, n)
	b[0] = recordVersion
	if r.hasRaw {
		b[1] |= flagRaw
	}
	cut := r.cut && r.hasRaw
	if cut {
		b[1] |= flagEvidence
	}
	for _, part := range [][]byte{r.msg, r.rep, r.xarf} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	if cut {
		b = binary.AppendUvarint(b, uint64(r.cutAt))
	}
	if r.hasRaw {
		b = append(b, r.raw...)
	}
	binary.BigEndian.PutUint32(b[2:], recordSum(b))
	return b
}

// decodeRecord checks v's checksum and splits v without copying: the
// parts alias v, which for a value read from bbolt is valid only inside
// its transaction. A checksum that does not hold is errChecksum.
func decodeRecord(v []byte) (record, error) {
	if len(v) < recordHeader || v[0] != recordVersion {
		return record{}, errBadRecord
	}
	if binary.BigEndian.Uint32(v[2:]) != recordSum(v) {
		return record{}, errChecksum
	}
	return decodeParts(v, recordHeader)
}

// decodeRecordV1 reads a version 1 record (schema 2, no checksum): only
// the migration to schema 3 calls it.
func decodeRecordV1(v []byte) (record, error) {
	if len(v) < recordHeaderV1 || v[0] != recordVersionV1 {
		return record{}, errBadRecord
	}
	return decodeParts(v, recordHeaderV1)
}

func decodeParts(v []byte, header int) (record, error) {
	var r record
	if v[1]&^(flagRaw|flagEvidence) != 0 {
		return r, errBadRecord
	}
	r.hasRaw = v[1]&flagRaw != 0
	rest := v[header:]
	for _, part := range []*[]byte{&r.msg, &r.rep, &r.xarf} {
		var ok bool
		if *part, rest, ok = chunk(rest); !ok {
			return r, errBadRecord
		}
	}
	if v[1]&flagEvidence != 0 {
		at, k := binary.Uvarint(rest)
		if k <= 0 || at > uint64(len(r.xarf)) || !r.hasRaw {
			return r, errBadRecord
		}
		r.cut, r.cutAt, rest = true, int(at), rest[k:]
	}
	if r.hasRaw {
		r.raw = rest
	} else if len(rest) > 0 {
		return r, errBadRecord
	}
	return r, nil
}

func chunk(b []byte) (part, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// document returns a copy of the report's XARF document as it was given
// to Put: with the cut evidence payload back in place.
func (r *record) document() []byte {
	if !r.cut {
		return append([]byte(nil), r.xarf...)
	}
	enc := base64.StdEncoding
	out := make([]byte, 0, len(r.xarf)+enc.EncodedLen(len(r.raw)))
	out = append(out, r.xarf[:r.cutAt]...)
	out = enc.AppendEncode(out, r.raw)
	return append(out, r.xarf[r.cutAt:]...)
}

// reportMeta is a report's record without its document.
type reportMeta struct {
	ID       ID         `json:"id"`
	Channel  string     `json:"channel"`
	SourceIP netip.Addr `json:"source_ip,omitzero"`
	Via      string     `json:"via"`
}

func (m *reportMeta) report(xarf []byte) *Report {
	return &Report{ID: m.ID, Channel: m.Channel, SourceIP: m.SourceIP, Via: m.Via, XARF: xarf}
}

func encodeReport(r *Report) (meta []byte, err error) {
	return json.Marshal(reportMeta{ID: r.ID, Channel: r.Channel, SourceIP: r.SourceIP, Via: r.Via})
}

// report decodes the record's report; the result owns its memory.
func (r *record) report() (*Report, error) {
	var m reportMeta
	if err := json.Unmarshal(r.rep, &m); err != nil {
		return nil, err
	}
	return m.report(r.document()), nil
}

// payloadKey starts an evidence payload in JSON as encoding/json writes
// it (no space after the colon).
var payloadKey = []byte(`"payload":"`)

// cutEvidence finds, in the XARF document rep, an evidence payload that
// is exactly base64 of raw and returns rep without it and where it was;
// ok is false when there is none (a headers-only evidence, a submitted
// document, JSON written another way): then rep is stored whole.
func cutEvidence(rep, raw []byte) (out []byte, at int, ok bool) {
	n := base64.StdEncoding.EncodedLen(len(raw))
	if len(raw) == 0 || len(rep) < len(payloadKey)+n+1 {
		// No room for the payload: a headers-only evidence of a large
		// message, which must not cost an encoding of the message.
		return rep, 0, false
	}
	for from := 0; ; {
		i := bytes.Index(rep[from:], payloadKey)
		if i < 0 {
			return rep, 0, false
		}
		at = from + i + len(payloadKey)
		if end := at + n; end < len(rep) && rep[end] == '"' && isBase64Of(rep[at:end], raw) {
			out = make([]byte, 0, len(rep)-n)
			out = append(append(out, rep[:at]...), rep[end:]...)
			return out, at, true
		}
		from = at
	}
}

// CutEvidence returns the XARF document rep without its evidence payload
// when that payload is exactly base64 of raw, and where it was; ok is
// false when rep holds no such payload (then rep is returned whole).
// PasteEvidence undoes it. A record sent between cluster nodes carries
// the message once this way instead of twice.
func CutEvidence(rep, raw []byte) (out []byte, at int, ok bool) { return cutEvidence(rep, raw) }

// PasteEvidence puts base64 of raw back into doc at at, where
// CutEvidence took it out. It returns an error when at is not inside
// doc.
func PasteEvidence(doc []byte, at int, raw []byte) ([]byte, error) {
	if at < 0 || at > len(doc) {
		return nil, fmt.Errorf("evidence position %d outside a document of %d bytes", at, len(doc))
	}
	r := record{xarf: doc, raw: raw, cut: true, cutAt: at}
	return r.document(), nil
}

// isBase64Of reports whether enc is base64.StdEncoding of raw, encoding
// raw piece by piece instead of whole: the message can be megabytes.
func isBase64Of(enc, raw []byte) bool {
	var buf [4 << 10]byte
	const step = len(buf) / 4 * 3 // whole 3-byte groups: no padding inside
	for len(raw) > 0 {
		k := min(step, len(raw))
		m := base64.StdEncoding.EncodedLen(k)
		if len(enc) < m {
			return false
		}
		base64.StdEncoding.Encode(buf[:m], raw[:k])
		if !bytes.Equal(enc[:m], buf[:m]) {
			return false
		}
		raw, enc = raw[k:], enc[m:]
	}
	return len(enc) == 0
}
