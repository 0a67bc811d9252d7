package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
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
// Layout (all numbers uvarint):
//
//	byte 0      recordVersion
//	byte 1      flags: flagRaw when the message bytes are stored,
//	            flagEvidence when the document's evidence payload was cut
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
	recordVersion = 1
	flagRaw       = 1 << 0
	flagEvidence  = 1 << 1
)

var errBadRecord = errors.New("record is truncated or of an unknown version")

func (r *record) encode() []byte {
	n := 2 + 4*binary.MaxVarintLen64 + len(r.msg) + len(r.rep) + len(r.xarf) + len(r.raw)
	b := make([]byte, 2, n)
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
	return b
}

// decodeRecord splits v without copying: the parts alias v, which for a
// value read from bbolt is valid only inside its transaction.
func decodeRecord(v []byte) (record, error) {
	var r record
	if len(v) < 2 || v[0] != recordVersion || v[1]&^(flagRaw|flagEvidence) != 0 {
		return r, errBadRecord
	}
	r.hasRaw = v[1]&flagRaw != 0
	rest := v[2:]
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
