package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
)

func TestPutNewIsIdempotent(t *testing.T) {
	s := open(t, t.TempDir())
	m := msg(t, "fbl")
	m.Status = StatusConverted
	raw := []byte("Subject: first\r\n\r\nbody")
	doc := []byte(`{"report_id":"` + m.ID.String() + `","evidence":[{"payload":"` + base64.StdEncoding.EncodeToString(raw) + `"}]}`)
	e := Entry{Message: m, Raw: raw, Report: &Report{ID: m.ID, Channel: "fbl", Via: "smtp", XARF: doc},
		Outbox: &OutboxEntry{ID: m.ID, Channel: "fbl", Status: OutboxPending, Created: m.Envelope.ReceivedAt}}
	stored, err := s.PutNew([]Entry{e})
	if err != nil || len(stored) != 1 || !stored[0] {
		t.Fatalf("first PutNew = %v, %v", stored, err)
	}
	// The outbox entry moves on; a second apply of the same record (the
	// stream redelivers) must neither reset it nor change the record.
	now := time.Now()
	if _, err := s.Cancel(m.ID, now, "test"); err != nil {
		t.Fatal(err)
	}
	again := e
	m2 := *m
	m2.Reason = "a different record under the same id"
	again.Message = &m2
	again.Raw = []byte("Subject: other\r\n\r\nbody")
	again.Outbox = &OutboxEntry{ID: m.ID, Channel: "fbl", Status: OutboxPending, Created: m.Envelope.ReceivedAt}
	other := Entry{Message: msg(t, "fbl"), Raw: []byte("x")}
	stored, err = s.PutNew([]Entry{again, other})
	if err != nil || len(stored) != 2 || stored[0] || !stored[1] {
		t.Fatalf("second PutNew = %v, %v; want [false true]", stored, err)
	}
	ob, err := s.GetOutbox(m.ID)
	if err != nil || ob.Status == OutboxPending {
		t.Errorf("outbox after a repeated apply = %+v, %v: reset to pending", ob, err)
	}
	got, err := s.Message(m.ID)
	if err != nil || got.Reason != "" {
		t.Errorf("record after a repeated apply = %+v, %v", got, err)
	}
	if b, _ := s.Raw(m.ID); !bytes.Equal(b, raw) {
		t.Errorf("raw after a repeated apply = %q", b)
	}
	rep, err := s.GetReport(m.ID)
	if err != nil || !bytes.Equal(rep.XARF, doc) {
		t.Errorf("report = %s, %v", rep.XARF, err)
	}
	if _, err := s.Message(other.Message.ID); err != nil {
		t.Errorf("the new entry of the batch: %v", err)
	}
	unknown, _ := NewID()
	held, err := s.Held([]ID{m.ID, unknown, other.Message.ID})
	if err != nil || !held[0] || held[1] || !held[2] {
		t.Errorf("Held = %v, %v; want [true false true]", held, err)
	}
}

func TestCutAndPasteEvidence(t *testing.T) {
	raw := []byte("Subject: x\r\n\r\n\x00\xff")
	doc, _ := json.Marshal(map[string]any{"evidence": []map[string]string{{"payload": base64.StdEncoding.EncodeToString(raw)}}})
	cut, at, ok := CutEvidence(doc, raw)
	if !ok || len(cut) >= len(doc) {
		t.Fatalf("CutEvidence = %q, %d, %v", cut, at, ok)
	}
	back, err := PasteEvidence(cut, at, raw)
	if err != nil || !bytes.Equal(back, doc) {
		t.Errorf("PasteEvidence = %q, %v; want %q", back, err, doc)
	}
	if _, err := PasteEvidence(cut, len(cut)+1, raw); err == nil {
		t.Error("PasteEvidence outside the document: no error")
	}
}
