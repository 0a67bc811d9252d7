package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// A record is everything stored under one id in the records bucket: the
// message record, the report and the message bytes (the evidence). They
// are written together, read by id and deleted together, so one B+tree
// holds them: every B+tree a commit touches costs page writes on the
// critical path of the 250, and a bucket per kind cost a sixth of the
// commit time (see BenchmarkPutMessageSerial).
//
// A report's evidence is, nearly always, the stored message itself in
// base64: kept twice, it made a record 2.6 times the size of its message
// (a 6 KB ARF report took 15.5 KB), and every byte is written inside the
// commit. So the payload is cut out of the stored report JSON when it is
// exactly base64 of the stored bytes, and its offset kept; reading the
// report puts it back, byte for byte.
//
// Layout (all numbers uvarint):
//
//	byte 0      recordVersion
//	byte 1      flags: flagRaw when the message bytes are stored,
//	            flagEvidence when the report's evidence payload was cut
//	len, bytes  message record JSON (empty: a report submitted over HTTP)
//	len, bytes  report JSON (empty: a message without report)
//	offset      with flagEvidence: where in the report JSON base64 of the
//	            message bytes goes back
//	rest        the message bytes exactly as stored
type record struct {
	msg, rep []byte
	raw      []byte
	hasRaw   bool
	// cut: the evidence payload was cut out of rep at offset cutAt.
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
	n := 2 + 3*binary.MaxVarintLen64 + len(r.msg) + len(r.rep) + len(r.raw)
	b := make([]byte, 2, n)
	b[0] = recordVersion
	if r.hasRaw {
		b[1] |= flagRaw
	}
	cut := r.cut && r.hasRaw
	if cut {
		b[1] |= flagEvidence
	}
	b = binary.AppendUvarint(b, uint64(len(r.msg)))
	b = append(b, r.msg...)
	b = binary.AppendUvarint(b, uint64(len(r.rep)))
	b = append(b, r.rep...)
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
	var ok bool
	if r.msg, rest, ok = chunk(rest); !ok {
		return r, errBadRecord
	}
	if r.rep, rest, ok = chunk(rest); !ok {
		return r, errBadRecord
	}
	if v[1]&flagEvidence != 0 {
		at, k := binary.Uvarint(rest)
		if k <= 0 || at > uint64(len(r.rep)) || !r.hasRaw {
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

// report returns the report JSON as it was given to Put: with the cut
// evidence payload back in place. It copies only when there was a cut.
func (r *record) report() []byte {
	if !r.cut {
		return r.rep
	}
	enc := base64.StdEncoding
	out := make([]byte, 0, len(r.rep)+enc.EncodedLen(len(r.raw)))
	out = append(out, r.rep[:r.cutAt]...)
	out = enc.AppendEncode(out, r.raw)
	return append(out, r.rep[r.cutAt:]...)
}

// payloadKey starts an evidence payload in JSON as encoding/json writes
// it (no space after the colon).
var payloadKey = []byte(`"payload":"`)

// cutEvidence finds, in the report JSON rep, an evidence payload that is
// exactly base64 of raw and returns rep without it and where it was; ok
// is false when there is none (a headers-only evidence, a submitted
// document, JSON written another way): then rep is stored whole.
func cutEvidence(rep, raw []byte) (out []byte, at int, ok bool) {
	if len(raw) == 0 {
		return rep, 0, false
	}
	enc := base64.StdEncoding.AppendEncode(nil, raw)
	for from := 0; ; {
		i := bytes.Index(rep[from:], payloadKey)
		if i < 0 {
			return rep, 0, false
		}
		at = from + i + len(payloadKey)
		if end := at + len(enc); end < len(rep) && rep[end] == '"' && bytes.Equal(rep[at:end], enc) {
			out = make([]byte, 0, len(rep)-len(enc))
			out = append(append(out, rep[:at]...), rep[end:]...)
			return out, at, true
		}
		from = at
	}
}
