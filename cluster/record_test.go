package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

func testEntries(t testing.TB) []store.Entry {
	t.Helper()
	id1, _ := store.NewID()
	id2, _ := store.NewID()
	id3, _ := store.NewID()
	at := time.Date(2026, 12, 5, 17, 0, 0, 0, time.UTC)
	env := store.Envelope{PeerIP: netip.MustParseAddr("192.0.2.7"), PeerPort: 2525, MailFrom: "a@origin.example",
		Rcpts: []string{"fbl@example.net"}, ReceivedAt: at, Via: "smtp"}
	raw := append([]byte("Subject: x\r\n\r\n\x00\xff binary body"), bytes.Repeat([]byte("0123456789abcdef"), 512)...)
	doc := []byte(`{"report_id":"` + id1.String() + `","evidence":[{"payload":"` + base64.StdEncoding.EncodeToString(raw) + `"}]}`)
	return []store.Entry{
		{ // a report with its message and outbox entry: evidence is cut
			Message: &store.Message{ID: id1, Channel: "fbl", Envelope: env, Size: len(raw), Status: store.StatusConverted},
			Raw:     raw,
			Report:  &store.Report{ID: id1, Channel: "fbl", SourceIP: netip.MustParseAddr("198.51.100.9"), Via: "smtp", XARF: doc},
			Outbox:  &store.OutboxEntry{ID: id1, Channel: "fbl", Status: store.OutboxPending, Created: at},
		},
		{ // withheld and quarantined: no bytes; a retraction
			Message: &store.Message{ID: id2, Channel: "trap", Envelope: env, Status: store.StatusQuarantined, Reason: "redaction cannot be guaranteed", Withheld: true},
			Retract: &store.Retraction{ID: id2, Channel: "trap", MessageID: "<m@origin.example>", SourceIP: netip.MustParseAddr("192.0.2.9")},
		},
		{ // a submitted document: report only
			Report: &store.Report{ID: id3, Channel: "fbl", Via: "http", XARF: []byte(`{"report_id":"x"}`)},
		},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	in := testEntries(t)
	b, err := EncodeRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= len(in[0].Raw)*3/2 {
		t.Errorf("record of %d bytes: the evidence was not cut", len(b))
	}
	out, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalise(in), normalise(out)) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
	if !bytes.Equal(out[0].Report.XARF, in[0].Report.XARF) {
		t.Errorf("document = %s, want %s", out[0].Report.XARF, in[0].Report.XARF)
	}
}

// normalise makes entries comparable: times by instant, nil and empty
// slices alike.
func normalise(es []store.Entry) []store.Entry {
	out := make([]store.Entry, len(es))
	for i, e := range es {
		if e.Message != nil {
			m := *e.Message
			m.Envelope.ReceivedAt = m.Envelope.ReceivedAt.UTC()
			e.Message = &m
		}
		if e.Outbox != nil {
			o := *e.Outbox
			o.Created = o.Created.UTC()
			e.Outbox = &o
		}
		if len(e.Raw) == 0 {
			e.Raw = nil
		}
		out[i] = e
	}
	return out
}

func TestRecordRefusesDamage(t *testing.T) {
	b, err := EncodeRecord(testEntries(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func([]byte) []byte{
		"flipped bit": func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"truncated":   func(b []byte) []byte { return b[:len(b)-3] },
		"trailing":    func(b []byte) []byte { return append(b, 0) },
		"version 2":   func(b []byte) []byte { b[3] = 2; return b },
		"not magic":   func(b []byte) []byte { b[0] = 'Y'; return b },
		"empty":       func([]byte) []byte { return nil },
	} {
		c := mutate(append([]byte(nil), b...))
		if _, err := DecodeRecord(c); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: err = %v, want ErrRecord", name, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	b, err := EncodeRecord(testEntries(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:20])
	f.Add([]byte("XRC\x01\x00\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The checksum would stop nearly every input before the
		// parser: fix it up so that the fuzzer reaches the fields.
		if len(b) >= 8 {
			copy(b, recordMagic[:])
			b[4], b[5], b[6], b[7] = 0, 0, 0, 0
			sum := crcOf(b[8:])
			b[4], b[5], b[6], b[7] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
		}
		es, err := DecodeRecord(b)
		if err != nil {
			return
		}
		// What decodes encodes again, and the same entries come back.
		again, err := EncodeRecord(es)
		if err != nil {
			t.Fatalf("decoded entries do not encode: %v", err)
		}
		es2, err := DecodeRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if len(es2) != len(es) {
			t.Fatalf("%d entries, then %d", len(es), len(es2))
		}
		for i := range es {
			if entryID(&es[i]) != entryID(&es2[i]) || !bytes.Equal(es[i].Raw, es2[i].Raw) {
				t.Fatalf("entry %d changed in a round trip", i)
			}
			if es[i].Report != nil && !bytes.Equal(es[i].Report.XARF, es2[i].Report.XARF) {
				t.Fatalf("entry %d: document changed in a round trip", i)
			}
		}
	})
}
