package api

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// quarantineFixture stores a real feedback report as a message of fbl
// quarantined by an older parser version (its record written directly,
// as that version did), and returns its id.
func (e *env) quarantineFixture(name, reason string) store.ID {
	e.t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "arf", "testdata", name))
	if err != nil {
		e.t.Fatal(err)
	}
	id, _ := store.NewID()
	m := &store.Message{ID: id, Channel: "fbl", Size: len(raw), Status: store.StatusQuarantined, Reason: reason,
		Envelope: store.Envelope{Via: "smtp", Rcpts: []string{"fbl@test.example"}, MailFrom: "fbl-sender@provider.example",
			ReceivedAt: time.Now().UTC()}}
	if err := e.st.Put([]store.Entry{{Message: m, Raw: raw}}); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func TestReprocessQuarantinedMessage(t *testing.T) {
	e := newEnv(t, true, nil)
	live := openStream(t, e, "", tokRead)
	id := e.quarantineFixture("01-complete-lf.eml", "xarf: no origin address (xarfd 0.1)")

	// Read: the record, without body or recipients.
	r := e.get("/api/v1/messages/"+id.String(), tokRead)
	var d map[string]any
	r.json(t, &d)
	if r.code != 200 || d["status"] != "quarantined" || d["reason"] != "xarf: no origin address (xarfd 0.1)" ||
		d["channel"] != "fbl" || d["rcpt_count"] != 1.0 || d["report"] != false || d["quarantined_at"] == nil {
		t.Fatalf("message: %d %s", r.code, r.body)
	}
	if strings.Contains(string(r.body), "fbl@test.example") {
		t.Errorf("the record shows the recipients: %s", r.body)
	}

	// Who may act: submit scope, and a token restricted to other
	// channels sees no such message.
	path := "/api/v1/messages/" + id.String() + "/reprocess"
	if r := e.do("POST", path, tokRead, "application/json", nil); r.code != 403 {
		t.Errorf("reader: %d", r.code)
	}
	if r := e.do("POST", path, tokSubmit, "application/json", nil); r.code != 404 {
		t.Errorf("token of channel plain: %d", r.code)
	}
	if r := e.do("POST", path, tokSubmitAll, "text/plain", nil); r.code != 415 {
		t.Errorf("without JSON Content-Type: %d", r.code)
	}
	if r := e.do("POST", path, tokSubmitAll, "application/json", []byte("not json")); r.code != 400 {
		t.Errorf("bad body: %d", r.code)
	}

	r = e.do("POST", path, tokSubmitAll, "application/json", []byte(`{"reason":"parser fixed in 0.2"}`))
	var out struct{ ID, Status, Reason string }
	r.json(t, &out)
	if r.code != 200 || out.ID != id.String() || out.Status != "report" || out.Reason != "" {
		t.Fatalf("reprocess: %d %s", r.code, r.body)
	}
	if ev := live.next(t); ev.event != "report" || ev.id != id.String() {
		t.Fatalf("the stream did not see the report: %+v", ev)
	}
	if r := e.get("/api/v1/reports/"+id.String(), tokRead); r.code != 200 || !strings.Contains(string(r.body), id.String()) {
		t.Errorf("report: %d %s", r.code, r.body)
	}
	if r := e.get("/api/v1/reports/"+id.String()+"/evidence", tokRead); r.code != 200 {
		t.Errorf("evidence: %d", r.code)
	}
	r = e.get("/api/v1/messages/"+id.String(), tokRead)
	d = nil
	r.json(t, &d)
	if d["status"] != "converted" || d["report"] != true || d["quarantined_at"] != nil {
		t.Errorf("message after: %s", r.body)
	}
	if r := e.get("/api/v1/messages?status=quarantined", tokRead); !strings.Contains(string(r.body), `"messages":[]`) {
		t.Errorf("still listed: %s", r.body)
	}
	// A report is not quarantined: neither action applies.
	if r := e.do("POST", path, tokSubmitAll, "application/json", nil); r.code != 404 {
		t.Errorf("reprocess of a report: %d %s", r.code, r.body)
	}
	if r := e.do("DELETE", "/api/v1/messages/"+id.String(), tokSubmitAll, "application/json", nil); r.code != 404 {
		t.Errorf("delete of a report: %d %s", r.code, r.body)
	}
}

func TestReprocessStaysQuarantined(t *testing.T) {
	e := newEnv(t, false, nil)
	notARF := []byte("From: someone@example.org\r\nSubject: hello\r\n\r\nnot a feedback report\r\n")
	r := e.do("POST", "/api/v1/channels/fbl/messages", "", "message/rfc822", notARF)
	var sub struct{ ID string }
	r.json(t, &sub)
	r = e.do("POST", "/api/v1/messages/"+sub.ID+"/reprocess", "", "application/json", nil)
	var out struct{ ID, Status, Reason string }
	r.json(t, &out)
	if r.code != 200 || out.Status != "quarantined" || out.ID != sub.ID || out.Reason == "" {
		t.Fatalf("reprocess: %d %s", r.code, r.body)
	}
	if q, _ := e.st.QuarantineEntries(); len(q) != 1 || q[0].Reason != out.Reason {
		t.Errorf("quarantine: %+v", q)
	}
}

func TestDeleteQuarantinedMessage(t *testing.T) {
	e := newEnv(t, true, nil)
	id := e.quarantineFixture("14-embedded-bounce.eml", "not a feedback report")
	keep := e.quarantineFixture("01-complete-lf.eml", "x")
	path := "/api/v1/messages/" + id.String()
	if r := e.do("DELETE", path, tokRead, "application/json", nil); r.code != 403 {
		t.Errorf("reader: %d", r.code)
	}
	if r := e.do("DELETE", path, tokSubmit, "application/json", nil); r.code != 404 {
		t.Errorf("token of another channel: %d", r.code)
	}
	if r := e.do("DELETE", path, tokSubmitAll, "", nil); r.code != 415 {
		t.Errorf("without Content-Type: %d", r.code)
	}
	r := e.do("DELETE", path, tokSubmitAll, "application/json", []byte(`{"reason":"a bounce, not a complaint"}`))
	if r.code != 204 || len(r.body) != 0 {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := e.get(path, tokRead); r.code != 404 {
		t.Errorf("after delete: %d %s", r.code, r.body)
	}
	if r := e.do("DELETE", path, tokSubmitAll, "application/json", nil); r.code != 404 {
		t.Errorf("deleted twice: %d", r.code)
	}
	if r := e.do("DELETE", "/api/v1/messages/not-an-id", tokSubmitAll, "application/json", nil); r.code != 404 {
		t.Errorf("bad id: %d", r.code)
	}
	var l struct{ Messages []struct{ ID string } }
	e.get("/api/v1/messages", tokRead).json(t, &l)
	if len(l.Messages) != 1 || l.Messages[0].ID != keep.String() {
		t.Errorf("listing after delete: %+v", l)
	}
	if !strings.Contains(e.log.String(), `"action":"delete"`) {
		t.Errorf("the deletion is not logged")
	}
}

// A withheld message (its redaction could not be guaranteed) has no body
// to run again: 409, and it can still be deleted.
func TestReprocessWithheldConflicts(t *testing.T) {
	e := newEnv(t, false, nil)
	bad := []byte("To: x@trap.test.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x@trap.test.example\"\r\n\r\n--x@trap.test.example\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x@trap.test.example--\r\n")
	r := e.do("POST", "/api/v1/channels/trap/messages?rcpt=x@trap.test.example", "", "message/rfc822", bad)
	var sub struct{ ID string }
	r.json(t, &sub)
	if r.code != 202 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r = e.do("POST", "/api/v1/messages/"+sub.ID+"/reprocess", "", "application/json", nil)
	if r.code != 409 || !strings.Contains(string(r.body), "withheld") {
		t.Fatalf("reprocess of a withheld message: %d %s", r.code, r.body)
	}
	var d map[string]any
	e.get("/api/v1/messages/"+sub.ID, "").json(t, &d)
	if d["withheld"] != true {
		t.Errorf("record: %v", d)
	}
	if b, _ := json.Marshal(d); strings.Contains(string(b), "x@trap") {
		t.Errorf("record shows the trap address: %s", b)
	}
	if r := e.do("DELETE", "/api/v1/messages/"+sub.ID, "", "application/json", nil); r.code != 204 {
		t.Errorf("delete: %d %s", r.code, r.body)
	}
}
