package api

import (
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// queue stores a report of channel with an outbox entry in status.
func (e *env) queue(channel string, status store.OutboxStatus) store.ID {
	e.t.Helper()
	id := idAt(time.Now())
	if err := e.st.Put([]store.Entry{{Report: report(id, channel, "198.51.100.1"), Outbox: &store.OutboxEntry{
		ID: id, Channel: channel, Status: status, Created: time.Now().UTC(),
	}}}); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) action(id store.ID, verb, token, body string) (reply, store.OutboxEntry) {
	e.t.Helper()
	// Every write names its media type, with a body or without (guard.go).
	r := e.do("POST", "/api/v1/outbox/"+id.String()+"/"+verb, token, "application/json", []byte(body))
	var x store.OutboxEntry
	if r.code == 200 {
		r.json(e.t, &x)
	}
	return r, x
}

func TestOutboxRetryAndCancel(t *testing.T) {
	e := newEnv(t, false, nil)
	id := e.queue("fbl", store.OutboxPending)

	r, x := e.action(id, "cancel", "", `{"reason": "sent to the wrong desk"}`)
	if r.code != 200 || x.Status != store.OutboxCancelled || !strings.Contains(x.Reason, "wrong desk") {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	if got, _ := e.st.GetOutbox(id); got.Status != store.OutboxCancelled {
		t.Fatalf("stored status %s", got.Status)
	}
	if r, _ := e.action(id, "cancel", "", ""); r.code != 409 || !strings.Contains(string(r.body), "cancelled") {
		t.Fatalf("cancel twice: %d %s", r.code, r.body)
	}
	r, x = e.action(id, "retry", "", "")
	if r.code != 200 || x.Status != store.OutboxPending || x.Requeued.IsZero() {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	if due, _, _ := e.st.DueOutbox(time.Now().Add(time.Second), 10); len(due) != 1 || due[0].ID != id {
		t.Fatalf("retried entry not due: %v", due)
	}

	sent := e.queue("fbl", store.OutboxSent)
	for _, verb := range []string{"retry", "cancel"} {
		if r, _ := e.action(sent, verb, "", ""); r.code != 409 {
			t.Errorf("%s of a sent entry: %d %s", verb, r.code, r.body)
		}
	}
	failed := e.queue("fbl", store.OutboxFailed)
	if r, x := e.action(failed, "retry", "", ""); r.code != 200 || x.Status != store.OutboxPending {
		t.Errorf("retry of a failed entry: %d %s", r.code, r.body)
	}

	if r, _ := e.action(idAt(time.Now()), "retry", "", ""); r.code != 404 {
		t.Errorf("unknown id: %d", r.code)
	}
	if r := e.do("POST", "/api/v1/outbox/not-an-id/cancel", "", "application/json", nil); r.code != 404 {
		t.Errorf("bad id: %d", r.code)
	}
	if r, _ := e.action(id, "retry", "", `reason`); r.code != 400 {
		t.Errorf("body not JSON: %d", r.code)
	}
	if r := e.do("POST", "/api/v1/outbox/"+id.String()+"/retry", "", "text/plain", []byte("x")); r.code != 415 {
		t.Errorf("wrong Content-Type: %d", r.code)
	}
	if r := e.do("POST", "/api/v1/outbox/"+id.String()+"/retry", "", "application/json", []byte(`{"reason":"`+strings.Repeat("x", 5000)+`"}`)); r.code != 413 {
		t.Errorf("huge body: %d", r.code)
	}
	if r := e.get("/api/v1/outbox/"+id.String()+"/retry", ""); r.code != 405 {
		t.Errorf("GET: %d", r.code)
	}
}

func TestOutboxActionsNeedSubmit(t *testing.T) {
	e := newEnv(t, true, nil)
	fbl := e.queue("fbl", store.OutboxPending)
	plain := e.queue("plain", store.OutboxPending)
	for tok, want := range map[string]int{"": 401, "wrong-token-value": 401, tokRead: 403, tokAdmin: 403} {
		if r, _ := e.action(fbl, "cancel", tok, ""); r.code != want {
			t.Errorf("token %q: %d, want %d", tok, r.code, want)
		}
	}
	// A token restricted to channel plain sees only its entries.
	if r, _ := e.action(fbl, "cancel", tokSubmit, ""); r.code != 404 {
		t.Errorf("restricted token on another channel's entry: %d", r.code)
	}
	if r, x := e.action(plain, "cancel", tokSubmit, ""); r.code != 200 || !strings.Contains(x.Reason, "submitter") {
		t.Errorf("restricted token on its channel: %d %s", r.code, r.body)
	}
	if r, x := e.action(fbl, "cancel", tokSubmitAll, ""); r.code != 200 || x.Status != store.OutboxCancelled {
		t.Errorf("submit token: %d %s", r.code, r.body)
	}
	if got, _ := e.st.GetOutbox(fbl); got.Status != store.OutboxCancelled {
		t.Fatalf("stored status %s", got.Status)
	}
}

// GET /api/v1/outbox/{id}: the entry as listed, with its history.
func TestOutboxEntryWithHistory(t *testing.T) {
	e := newEnv(t, true, nil)
	fbl := e.queue("fbl", store.OutboxPending)
	if r, _ := e.action(fbl, "cancel", tokSubmitAll, `{"reason":"wrong <desk>"}`); r.code != 200 {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	if r, _ := e.action(fbl, "retry", tokSubmitAll, ""); r.code != 200 {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	r := e.get("/api/v1/outbox/"+fbl.String(), tokRead)
	if r.code != 200 {
		t.Fatalf("GET: %d %s", r.code, r.body)
	}
	var got struct {
		ID             string          `json:"id"`
		Status         string          `json:"status"`
		Attempts       *int            `json:"attempts"`
		History        []store.Attempt `json:"history"`
		HistoryDropped *uint32         `json:"history_dropped"`
	}
	r.json(t, &got)
	if got.ID != fbl.String() || got.Status != "pending" || got.Attempts == nil || *got.Attempts != 0 || got.HistoryDropped == nil {
		t.Errorf("entry fields: %s", r.body)
	}
	if len(got.History) != 2 || got.History[0].Outcome != store.AttemptCancelled || got.History[1].Outcome != store.AttemptRequeued ||
		!strings.Contains(got.History[0].Detail, "wrong <desk>") || got.History[0].Node == "" {
		t.Errorf("history: %s", r.body)
	}
	// Rows are data: HTML in a reason is escaped by the JSON encoder.
	if strings.Contains(string(r.body), "<desk>") {
		t.Errorf("unescaped markup in %s", r.body)
	}
	plain := e.queue("plain", store.OutboxPending)
	if r := e.get("/api/v1/outbox/"+plain.String(), tokRead); r.code != 200 || !strings.Contains(string(r.body), `"history":[]`) {
		t.Errorf("entry without rows: %d %s", r.code, r.body)
	}
	for path, want := range map[string]int{
		"/api/v1/outbox/" + fbl.String():              200,
		"/api/v1/outbox/" + idAt(time.Now()).String(): 404,
		"/api/v1/outbox/not-an-id":                    404,
	} {
		if r := e.get(path, tokRead); r.code != want {
			t.Errorf("%s: %d, want %d", path, r.code, want)
		}
	}
	if r := e.get("/api/v1/outbox/"+fbl.String(), ""); r.code != 401 {
		t.Errorf("no token: %d", r.code)
	}
	if r := e.get("/api/v1/outbox/"+fbl.String(), tokSubmit); r.code != 403 {
		t.Errorf("token without read scope: %d", r.code)
	}
}
