package cluster

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

func testOps(t testing.TB) []*ops.Op {
	t.Helper()
	at := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	es := testEntries(t)
	e := es[0]
	return []*ops.Op{
		{ID: "a1", Kind: ops.Delist, Node: "mx1", At: at, By: "ops", Reason: "false positive", IndicatorKind: "ip", Value: "192.0.2.7"},
		{ID: "a2", Kind: ops.Case, Node: "mx2", At: at, By: "token ops", Reason: "spoke to them", CaseKey: "sub:42", CaseFirstSeen: at.Add(-time.Hour), Action: "resolve"},
		{ID: "a3", Kind: ops.QuarantineDelete, Node: "mx1", At: at, Target: e.Message.ID},
		{ID: "a4", Kind: ops.Retry, Node: "mx3", At: at, Reason: "retry requested", Target: e.Message.ID},
		{ID: "a5", Kind: ops.Reprocess, Node: "mx1", At: at, Target: e.Message.ID, Entry: &e},
	}
}

func TestOpRoundTrip(t *testing.T) {
	for _, op := range testOps(t) {
		b, err := EncodeOp(op)
		if err != nil {
			t.Fatalf("%s: %v", op.Kind, err)
		}
		got, err := DecodeOp(b)
		if err != nil {
			t.Fatalf("%s: %v", op.Kind, err)
		}
		want := *op
		if op.Entry != nil {
			if !reflect.DeepEqual(got.Entry.Message, op.Entry.Message) || !bytes.Equal(got.Entry.Raw, op.Entry.Raw) ||
				!bytes.Equal(got.Entry.Report.XARF, op.Entry.Report.XARF) || !reflect.DeepEqual(got.Entry.Outbox, op.Entry.Outbox) {
				t.Errorf("%s: the entry differs after a round trip", op.Kind)
			}
			want.Entry, got.Entry = nil, nil
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", op.Kind, *got, want)
		}
		// Every single changed byte is refused (the checksum, or the
		// magic and version before it).
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x20
			if _, err := DecodeOp(c); err == nil {
				t.Fatalf("%s: byte %d changed, still decodes", op.Kind, i)
			}
		}
		if _, err := DecodeOp(b[:len(b)-1]); err == nil {
			t.Errorf("%s: truncated, still decodes", op.Kind)
		}
	}
}

func TestOpRefused(t *testing.T) {
	ok := testOps(t)[0]
	b, err := EncodeOp(ok)
	if err != nil {
		t.Fatal(err)
	}
	newer := bytes.Clone(b)
	newer[3] = opVersion + 1
	if _, err := DecodeOp(newer); err == nil {
		t.Error("a newer version decodes")
	}
	if _, err := DecodeRecord(b); err == nil {
		t.Error("an action decodes as a record")
	}
	e := testEntries(t)[0]
	for name, op := range map[string]*ops.Op{
		"unknown kind":         {ID: "x", Kind: "outbox.purge", At: ok.At, Target: e.Message.ID},
		"no id":                {Kind: ops.Retry, At: ok.At, Target: e.Message.ID},
		"no time":              {ID: "x", Kind: ops.Retry, Target: e.Message.ID},
		"retry no target":      {ID: "x", Kind: ops.Retry, At: ok.At},
		"delist no value":      {ID: "x", Kind: ops.Delist, At: ok.At, IndicatorKind: "ip"},
		"case no key":          {ID: "x", Kind: ops.Case, At: ok.At, Action: "resolve", CaseFirstSeen: ok.At},
		"reprocess no entry":   {ID: "x", Kind: ops.Reprocess, At: ok.At, Target: e.Message.ID},
		"entry in a retry":     {ID: "x", Kind: ops.Retry, At: ok.At, Target: e.Message.ID, Entry: &e},
		"reprocess of another": {ID: "x", Kind: ops.Reprocess, At: ok.At, Target: store.ID{9}, Entry: &e},
	} {
		if _, err := EncodeOp(op); err == nil {
			t.Errorf("%s: encodes", name)
		}
	}
}

func FuzzDecodeOp(f *testing.F) {
	for _, op := range testOps(f) {
		b, err := EncodeOp(op)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("XOP\x01\x00\x00\x00\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fix the checksum up, so that the fuzzer reaches the fields.
		if len(b) >= 8 {
			copy(b, opMagic[:])
			sum := crcOf(b[8:])
			b[4], b[5], b[6], b[7] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
		}
		op, err := DecodeOp(b)
		if err != nil {
			return
		}
		// What decodes encodes again, and decodes to the same.
		again, err := EncodeOp(op)
		if err != nil {
			t.Fatalf("a decoded action does not encode: %v", err)
		}
		op2, err := DecodeOp(again)
		if err != nil {
			t.Fatalf("a re-encoded action does not decode: %v", err)
		}
		op.Entry, op2.Entry = nil, nil
		if !reflect.DeepEqual(op, op2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", op, op2)
		}
	})
}
