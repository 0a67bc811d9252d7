package store

import (
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
// Layout (all lengths uvarint):
//
//	byte 0      recordVersion
//	byte 1      flags: flagRaw when the message bytes are stored
//	len, bytes  message record JSON (empty: a report submitted over HTTP)
//	len, bytes  report JSON (empty: a message without report)
//	rest        the message bytes exactly as stored
type record struct {
	msg, rep []byte
	raw      []byte
	hasRaw   bool
}

const (
	recordVersion = 1
	flagRaw       = 1 << 0
)

var errBadRecord = errors.New("record is truncated or of an unknown version")

func (r *record) encode() []byte {
	n := 2 + 2*binary.MaxVarintLen64 + len(r.msg) + len(r.rep) + len(r.raw)
	b := make([]byte, 2, n)
	b[0] = recordVersion
	if r.hasRaw {
		b[1] = flagRaw
	}
	b = binary.AppendUvarint(b, uint64(len(r.msg)))
	b = append(b, r.msg...)
	b = binary.AppendUvarint(b, uint64(len(r.rep)))
	b = append(b, r.rep...)
	if r.hasRaw {
		b = append(b, r.raw...)
	}
	return b
}

// decodeRecord splits v without copying: the parts alias v, which for a
// value read from bbolt is valid only inside its transaction.
func decodeRecord(v []byte) (record, error) {
	var r record
	if len(v) < 2 || v[0] != recordVersion {
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
