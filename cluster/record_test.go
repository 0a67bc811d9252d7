package cluster

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
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
		"flipped bit":  func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-3] },
		"trailing":     func(b []byte) []byte { return append(b, 0) },
		"version 3":    func(b []byte) []byte { b[3] = 3; return b },
		"as version 2": func(b []byte) []byte { b[3] = 2; return b },
		"not magic":    func(b []byte) []byte { b[0] = 'Y'; return b },
		"empty":        func([]byte) []byte { return nil },
	} {
		c := mutate(append([]byte(nil), b...))
		if _, err := DecodeRecord(c); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: err = %v, want ErrRecord", name, err)
		}
	}
}

// sharedEntries is one message delivered to three channels, as ingest
// makes them: two channels store the same bytes, a redacting one its
// own; and a fourth delivery withheld.
func sharedEntries(t testing.TB, size int) []store.Entry {
	t.Helper()
	at := time.Date(2026, 12, 5, 17, 0, 0, 0, time.UTC)
	env := store.Envelope{PeerIP: netip.MustParseAddr("192.0.2.7"), MailFrom: "a@origin.example", ReceivedAt: at, Via: "smtp"}
	body := bytes.Repeat([]byte("spam spam spam\r\n"), size/16)
	raw := append([]byte("To: victim@trap.example\r\nSubject: x\r\n\r\n"), body...)
	redacted := append([]byte("To: xxxxxx@trap.example\r\nSubject: x\r\n\r\n"), body...)
	var out []store.Entry
	for i, r := range [][]byte{raw, redacted, raw, nil} {
		id, _ := store.NewID()
		ch := []string{"plain", "trap", "fbl", "quiet"}[i]
		e := store.Entry{Message: &store.Message{ID: id, Channel: ch, Envelope: env, Size: len(r), Status: store.StatusConverted}}
		if r == nil {
			e.Message.Status, e.Message.Withheld = store.StatusQuarantined, true
		} else {
			e.Raw = r
			doc := []byte(`{"report_id":"` + id.String() + `","evidence":[{"payload":"` + base64.StdEncoding.EncodeToString(r) + `"}]}`)
			e.Report = &store.Report{ID: id, Channel: ch, Via: "smtp", XARF: doc}
			e.Outbox = &store.OutboxEntry{ID: id, Channel: ch, Status: store.OutboxPending, Created: at}
		}
		out = append(out, e)
	}
	return out
}

// Identical message bytes travel once in version 2; every entry gets
// its own bytes and document back.
func TestRecordSharedRoundTrip(t *testing.T) {
	in := sharedEntries(t, 64<<10)
	v1, err := EncodeRecord(in)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := EncodeRecordShared(in)
	if err != nil {
		t.Fatal(err)
	}
	if v1[3] != 1 || v2[3] != 2 {
		t.Fatalf("versions %d and %d, want 1 and 2", v1[3], v2[3])
	}
	// Three copies of 64 KiB in version 1, two in version 2.
	if saved := len(v1) - len(v2); saved < len(in[0].Raw)-16 || saved > len(in[0].Raw)+16 {
		t.Errorf("version 2 is %d bytes, version 1 %d: want one copy (%d bytes) less", len(v2), len(v1), len(in[0].Raw))
	}
	for _, b := range [][]byte{v1, v2} {
		out, err := DecodeRecord(b)
		if err != nil {
			t.Fatalf("version %d: %v", b[3], err)
		}
		if !reflect.DeepEqual(normalise(in), normalise(out)) {
			t.Errorf("version %d round trip:\n got %+v\nwant %+v", b[3], out, in)
		}
	}
	// Nothing shared: version 1, byte for byte.
	distinct := in[:2]
	a, _ := EncodeRecord(distinct)
	b, _ := EncodeRecordShared(distinct)
	if !bytes.Equal(a, b) {
		t.Errorf("without shared bytes EncodeRecordShared wrote version %d", b[3])
	}
}

func TestRecordSharedRefusesDamage(t *testing.T) {
	b, err := EncodeRecordShared(sharedEntries(t, 1024))
	if err != nil {
		t.Fatal(err)
	}
	resum := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[4:8], crcOf(b[8:]))
		return b
	}
	for name, mutate := range map[string]func([]byte) []byte{
		"flipped bit":  func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"truncated":    func(b []byte) []byte { return resum(b[:len(b)-3]) },
		"as version 1": func(b []byte) []byte { b[3] = 1; return b },
		"a blob no entry holds": func(b []byte) []byte {
			b[8]++ // one more blob than written: the entries' count is read as a length
			return resum(b)
		},
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
	shared, err := EncodeRecordShared(sharedEntries(f, 256))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(shared)
	f.Add([]byte("XRC\x02\x00\x00\x00\x00\x01\x01x\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The checksum would stop nearly every input before the
		// parser: fix it up so that the fuzzer reaches the fields;
		// the version stays 1 or 2, as the input says.
		if len(b) >= 8 {
			v := 1 + b[3]%2
			copy(b, recordMagic[:])
			b[3] = v
			b[4], b[5], b[6], b[7] = 0, 0, 0, 0
			sum := crcOf(b[8:])
			b[4], b[5], b[6], b[7] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
		}
		es, err := DecodeRecord(b)
		if err != nil {
			return
		}
		// What decodes encodes again in either layout, and the same
		// entries come back.
		for _, encode := range []func([]store.Entry) ([]byte, error){EncodeRecord, EncodeRecordShared} {
			roundTrip(t, es, encode)
		}
	})
}

func roundTrip(t *testing.T, es []store.Entry, encode func([]store.Entry) ([]byte, error)) {
	again, err := encode(es)
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
}
