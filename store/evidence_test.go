package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"

	"go.etcd.io/bbolt"
)

// reportWithEvidence is a report whose XARF evidence is raw in base64, as
// ingest builds it, plus a second item that is not.
func reportWithEvidence(t testing.TB, id ID, raw []byte) *Report {
	t.Helper()
	doc := map[string]any{
		"xarf_version": "4.2.0", "report_id": id.String(),
		"evidence": []map[string]any{
			{"content_type": "text/plain", "payload": base64.StdEncoding.EncodeToString([]byte("a note"))},
			{"content_type": "message/rfc822", "payload": base64.StdEncoding.EncodeToString(raw), "size": len(raw)},
		},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &Report{ID: id, Channel: "trap", Via: "smtp", XARF: b}
}

func storedValue(t *testing.T, s *Store, id ID) []byte {
	t.Helper()
	var v []byte
	if err := s.View(func(tx *bbolt.Tx) error {
		v = append([]byte(nil), tx.Bucket(bucketRecords).Get(id[:])...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// The evidence is stored once: the record is not much larger than the
// message, and the report reads back byte for byte.
func TestEvidenceStoredOnce(t *testing.T) {
	s := open(t, t.TempDir())
	raw := bytes.Repeat([]byte("Received: from x\r\n"), 300) // 5.4 KB
	m := msg(t, "trap")
	r := reportWithEvidence(t, m.ID, raw)
	if err := s.Put([]Entry{{Message: m, Raw: raw, Report: r}}); err != nil {
		t.Fatal(err)
	}
	v := storedValue(t, s, m.ID)
	if b64 := base64.StdEncoding.EncodeToString(raw); bytes.Contains(v, []byte(b64)) {
		t.Error("the record still holds the evidence in base64")
	}
	if len(v) > len(raw)+1500 {
		t.Errorf("record of %d bytes for a %d-byte message", len(v), len(raw))
	}
	got, err := s.GetReport(m.ID)
	if err != nil || !bytes.Equal(got.XARF, r.XARF) {
		t.Fatalf("report read back differs (%v):\n got %s\nwant %s", err, got.XARF, r.XARF)
	}
	if meta, err := s.GetReportMeta(m.ID); err != nil || meta.XARF != nil || meta.Channel != "trap" || meta.ID != m.ID {
		t.Errorf("GetReportMeta = %+v, %v", meta, err)
	}
	if _, err := s.GetReportMeta(ID{1}); err != ErrNotFound {
		t.Errorf("GetReportMeta of an unknown id: %v", err)
	}
	page, _, err := s.Reports(Query{Channel: "trap"})
	if err != nil || len(page) != 1 || !bytes.Equal(page[0].XARF, r.XARF) {
		t.Fatalf("report listed differs (%v): %d reports", err, len(page))
	}
	// Quarantining the message later rewrites its record: the report
	// keeps its evidence.
	if err := s.Quarantine(m.ID, "late"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetReport(m.ID); !bytes.Equal(got.XARF, r.XARF) {
		t.Error("report differs after the message was quarantined")
	}
	if n, _ := s.Recover(); n != 0 {
		t.Errorf("Recover quarantined %d records", n)
	}
}

// A report whose evidence is not the stored body (headers only, a
// submitted document, a withheld body) is stored whole.
func TestEvidenceNotTheBody(t *testing.T) {
	s := open(t, t.TempDir())
	raw := []byte("Subject: x\r\n\r\nbody\r\n")
	headersOnly := msg(t, "trap")
	withheld := msg(t, "trap")
	withheld.Withheld = true
	submitted, _ := NewID()
	cases := []Entry{
		{Message: headersOnly, Raw: raw, Report: reportWithEvidence(t, headersOnly.ID, []byte("Subject: x\r\n\r\n"))},
		{Message: withheld, Raw: raw, Report: reportWithEvidence(t, withheld.ID, raw)},
		{Report: reportWithEvidence(t, submitted, raw)},
	}
	if err := s.Put(cases); err != nil {
		t.Fatal(err)
	}
	for i, e := range cases {
		v := storedValue(t, s, e.Report.ID)
		if rec, err := decodeRecord(v); err != nil || rec.cut {
			t.Errorf("case %d: cut=%v, %v", i, rec.cut, err)
		}
		if got, err := s.GetReport(e.Report.ID); err != nil || !bytes.Equal(got.XARF, e.Report.XARF) {
			t.Errorf("case %d: report differs (%v)", i, err)
		}
	}
}

// Storing a new body under a record whose report was cut puts the old
// body back into the report first: the report keeps its own evidence.
func TestEvidenceSurvivesNewBody(t *testing.T) {
	s := open(t, t.TempDir())
	old := []byte("Subject: old\r\n\r\nold body\r\n")
	m := msg(t, "trap")
	r := reportWithEvidence(t, m.ID, old)
	if err := s.Put([]Entry{{Message: m, Raw: old, Report: r}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put([]Entry{{Message: m, Raw: []byte("Subject: new\r\n\r\nnew\r\n")}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetReport(m.ID); err != nil || !bytes.Equal(got.XARF, r.XARF) {
		t.Fatalf("report after a new body (%v):\n got %s\nwant %s", err, got.XARF, r.XARF)
	}
}

// FuzzCutEvidence: whatever the report JSON and body, cutting and putting
// back gives the report exactly, and a record with a cut round-trips.
func FuzzCutEvidence(f *testing.F) {
	f.Add([]byte(`{"payload":"eA=="}`), []byte("x"))
	f.Add([]byte(`{"payload":"","payload":"eA==","payload":"eA=="}`), []byte("x"))
	f.Add([]byte(`{"payload":"eA==`), []byte("x"))
	f.Fuzz(func(t *testing.T, rep, raw []byte) {
		out, at, ok := cutEvidence(rep, raw)
		if !ok {
			if !bytes.Equal(out, rep) {
				t.Fatal("no cut, but the report changed")
			}
			return
		}
		r := record{rep: []byte("{}"), xarf: out, raw: raw, hasRaw: true, cut: true, cutAt: at}
		if !bytes.Equal(r.document(), rep) {
			t.Fatalf("cut at %d of %q does not put back", at, rep)
		}
		d, err := decodeRecord(r.encode())
		if err != nil || !bytes.Equal(d.document(), rep) || !bytes.Equal(d.raw, raw) {
			t.Fatalf("record with a cut does not round-trip: %v", err)
		}
	})
}

func BenchmarkCutEvidence(b *testing.B) {
	raw := bytes.Repeat([]byte("Received: from x\r\n"), 300)
	rep := reportWithEvidence(b, ID{}, raw).XARF
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, _, ok := cutEvidence(rep, raw); !ok {
			b.Fatal("no cut")
		}
	}
}

// isBase64Of compares piece by piece: a difference in any piece, and a
// length off by one group, must show.
func TestIsBase64Of(t *testing.T) {
	for _, n := range []int{1, 2, 3, 3071, 3072, 3073, 10000, 3*3072 + 2} {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(i*7 + i/251)
		}
		enc := base64.StdEncoding.AppendEncode(nil, raw)
		if !isBase64Of(enc, raw) {
			t.Errorf("%d bytes: own encoding not recognised", n)
		}
		for _, at := range []int{0, len(enc) / 2, len(enc) - 1} {
			bad := bytes.Clone(enc)
			bad[at] ^= 1
			if isBase64Of(bad, raw) {
				t.Errorf("%d bytes: change at %d not seen", n, at)
			}
		}
		if isBase64Of(enc[:len(enc)-4], raw) || isBase64Of(append(bytes.Clone(enc), "AAAA"...), raw) {
			t.Errorf("%d bytes: length difference not seen", n)
		}
	}
}
