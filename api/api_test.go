package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/xarfd/xarfd/store"
)

const xarfDoc = `{"xarf_version": "4.2.0", "report_id": "00000000-0000-0000-0000-000000000000", "category": "messaging", "source_identifier": "198.51.100.9"}`

func TestAuthMatrix(t *testing.T) {
	e := newEnv(t, true, nil)
	id := idAt(time.Now())
	if err := e.st.Put([]store.Entry{{Report: report(id, "fbl", "198.51.100.1")}}); err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: hi\r\n\r\nbody\r\n")
	cases := []struct {
		name, method, path, token, ctype string
		body                             []byte
		want                             int
	}{
		{"health is open", "GET", "/healthz", "", "", nil, 200},
		{"metrics are open", "GET", "/metrics", "", "", nil, 200},
		{"no token", "GET", "/api/v1/reports", "", "", nil, 401},
		{"wrong token", "GET", "/api/v1/reports", "not-a-token", "", nil, 401},
		{"reader reads", "GET", "/api/v1/reports", tokRead, "", nil, 200},
		{"reader reads one", "GET", "/api/v1/reports/" + id.String(), tokRead, "", nil, 200},
		{"reader reads outbox", "GET", "/api/v1/outbox", tokRead, "", nil, 200},
		{"reader reads quarantine", "GET", "/api/v1/messages?status=quarantined", tokRead, "", nil, 200},
		{"admin reads", "GET", "/api/v1/reports", tokAdmin, "", nil, 200},
		{"admin backs up", "GET", "/api/v1/backup", tokAdmin, "", nil, 200},
		{"reader cannot back up", "GET", "/api/v1/backup", tokRead, "", nil, 403},
		{"submitter cannot read", "GET", "/api/v1/reports", tokSubmit, "", nil, 403},
		{"reader cannot submit", "POST", "/api/v1/channels/plain/messages", tokRead, "message/rfc822", msg, 403},
		{"admin cannot submit", "POST", "/api/v1/channels/plain/messages", tokAdmin, "message/rfc822", msg, 403},
		{"submitter submits to its channel", "POST", "/api/v1/channels/plain/messages", tokSubmit, "message/rfc822", msg, 202},
		{"submitter outside its channels", "POST", "/api/v1/channels/fbl/messages", tokSubmit, "message/rfc822", msg, 403},
		{"submitter outside its channels, reports", "POST", "/api/v1/channels/fbl/reports", tokSubmit, "application/json", []byte(xarfDoc), 403},
		{"unrestricted submitter", "POST", "/api/v1/channels/fbl/reports", tokSubmitAll, "application/json", []byte(xarfDoc), 202},
		{"unknown channel", "POST", "/api/v1/channels/nope/messages", tokSubmitAll, "message/rfc822", msg, 404},
		{"no token on submit", "POST", "/api/v1/channels/plain/messages", "", "message/rfc822", msg, 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.token, c.ctype, c.body)
			if r.code != c.want {
				t.Fatalf("%s %s: %d, want %d: %s", c.method, c.path, r.code, c.want, r.body)
			}
			if r.code == 401 && !strings.HasPrefix(r.h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %v", r.h)
			}
			if r.code >= 400 {
				var eb struct{ Error string }
				r.json(t, &eb)
				if eb.Error == "" {
					t.Errorf("error reply without error text: %s", r.body)
				}
			}
		})
	}
	// Other schemes are not bearer tokens.
	req := e.do("GET", "/api/v1/reports", "", "", nil)
	if req.code != 401 {
		t.Fatal(req.code)
	}
	logs := e.log.String()
	for _, tok := range []string{tokRead, tokSubmit, tokAdmin, "not-a-token"} {
		if strings.Contains(logs, tok) {
			t.Errorf("a token value reached the log")
		}
	}
	if !strings.Contains(logs, `"token":"reader"`) {
		t.Errorf("request log does not name the token:\n%s", logs)
	}
}

func TestOpenWithoutTokens(t *testing.T) {
	e := newEnv(t, false, nil)
	if r := e.get("/api/v1/reports", ""); r.code != 200 {
		t.Fatalf("open API: %d %s", r.code, r.body)
	}
	if r := e.get("/api/v1/backup", ""); r.code != 200 {
		t.Fatalf("open API backup: %d", r.code)
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t, false, nil)
	base := time.Now().Add(-time.Hour)
	var want []string
	var entries []store.Entry
	for i := 0; i < 250; i++ {
		id := idAt(base.Add(time.Duration(i) * time.Millisecond))
		want = append(want, id.String())
		entries = append(entries, store.Entry{Report: report(id, []string{"fbl", "plain"}[i%2], "198.51.100.1")})
	}
	if err := e.st.Put(entries); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(want) // newest first

	var got []string
	cursor, pages := "", 0
	for {
		path := "/api/v1/reports?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.get(path, "")
		if r.code != 200 {
			t.Fatalf("%s: %d %s", path, r.code, r.body)
		}
		var l listing
		r.json(t, &l)
		got = append(got, reportIDs(t, l.Reports)...)
		pages++
		if l.NextCursor == "" {
			break
		}
		if pages > 10 {
			t.Fatal("cursor never ends")
		}
		cursor = l.NextCursor
	}
	if pages != 3 {
		t.Errorf("pages: %d, want 3", pages)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paging lost, duplicated or reordered reports: got %d, want %d; first %v", len(got), len(want), got[:min(3, len(got))])
	}

	// Filtered paging keeps the filter across pages.
	var fbl []string
	cursor = ""
	for {
		r := e.get("/api/v1/reports?channel=fbl&limit=40&cursor="+cursor, "")
		var l listing
		r.json(t, &l)
		fbl = append(fbl, reportIDs(t, l.Reports)...)
		if cursor = l.NextCursor; cursor == "" {
			break
		}
	}
	if len(fbl) != 125 {
		t.Errorf("fbl reports over pages: %d, want 125", len(fbl))
	}
}

func TestFilters(t *testing.T) {
	e := newEnv(t, false, nil)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := idAt(t0)
	b := idAt(t0.Add(time.Hour))
	c := idAt(t0.Add(2 * time.Hour))
	d := idAt(t0.Add(3 * time.Hour))
	err := e.st.Put([]store.Entry{
		{Report: report(a, "fbl", "198.51.100.1")},
		{Report: report(b, "plain", "198.51.100.2")},
		{Report: report(c, "fbl", "2001:db8::7")},
		{Report: report(d, "fbl", "198.51.100.2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	list := func(q string) []string {
		t.Helper()
		r := e.get("/api/v1/reports?"+q, "")
		if r.code != 200 {
			t.Fatalf("%s: %d %s", q, r.code, r.body)
		}
		var l listing
		r.json(t, &l)
		return reportIDs(t, l.Reports)
	}
	ids := func(xs ...store.ID) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x.String())
		}
		return out
	}
	for _, c := range []struct {
		q    string
		want []string
	}{
		{"", ids(d, c, b, a)},
		{"channel=fbl", ids(d, c, a)},
		{"channel=plain", ids(b)},
		{"source_ip=198.51.100.2", ids(d, b)},
		{"source_ip=198.51.100.2&channel=fbl", ids(d)},
		{"source_ip=2001:db8:0:0::7", ids(c)},
		{"source_ip=::ffff:198.51.100.1", ids(a)},
		{"since=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339)), ids(d, c, b)},
		{"until=" + url.QueryEscape(t0.Add(2*time.Hour).Format(time.RFC3339)), ids(b, a)},
		{"since=" + url.QueryEscape(t0.Add(30*time.Minute).Format(time.RFC3339)) + "&until=" + url.QueryEscape(t0.Add(150*time.Minute).Format(time.RFC3339)), ids(c, b)},
		{"limit=1", ids(d)},
	} {
		if got := list(c.q); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %v, want %v", c.q, got, c.want)
		}
	}

	for _, c := range []struct{ q, param string }{
		{"source_ip=not-an-ip", "source_ip"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until"},
		{"limit=0", "limit"},
		{"limit=abc", "limit"},
		{"limit=100000", "limit"},
		{"cursor=xyz", "cursor"},
		{"channel=fbl&channel=plain", "channel"},
		{"sourceip=1.2.3.4", `"sourceip"`},
	} {
		r := e.get("/api/v1/reports?"+c.q, "")
		var eb struct{ Error, Parameter string }
		r.json(t, &eb)
		if r.code != 400 || eb.Parameter != c.param || !strings.Contains(eb.Error, c.param) {
			t.Errorf("%q: %d %s, want 400 naming %s", c.q, r.code, r.body, c.param)
		}
		if strings.Contains(string(r.body), "1.2.3.4") {
			t.Errorf("%q: the reply echoes a parameter value: %s", c.q, r.body)
		}
	}
	if r := e.get("/api/v1/reports?channel=nope", ""); r.code != 404 {
		t.Errorf("unknown channel: %d", r.code)
	}
}

func TestReportAndEvidence(t *testing.T) {
	e := newEnv(t, false, nil)
	id := idAt(time.Now())
	raw := []byte("Received: from x (x [198.51.100.1])\r\nSubject: spam\r\n\r\nbody\r\n")
	m := &store.Message{ID: id, Channel: "plain", Size: len(raw), Status: "converted", Envelope: store.Envelope{Via: "smtp"}}
	rep := report(id, "plain", "198.51.100.1")
	onlyRep := idAt(time.Now())
	if err := e.st.Put([]store.Entry{{Message: m, Raw: raw, Report: rep}, {Report: report(onlyRep, "fbl", "198.51.100.3")}}); err != nil {
		t.Fatal(err)
	}
	r := e.get("/api/v1/reports/"+id.String(), "")
	if r.code != 200 || r.h.Get("Content-Type") != "application/json" {
		t.Fatalf("report: %d %v %s", r.code, r.h, r.body)
	}
	var doc map[string]any
	r.json(t, &doc)
	if doc["report_id"] != id.String() {
		t.Errorf("report: %s", r.body)
	}
	r = e.get("/api/v1/reports/"+id.String()+"/evidence", "")
	if r.code != 200 || r.h.Get("Content-Type") != "message/rfc822" || !bytes.Equal(r.body, raw) {
		t.Fatalf("evidence: %d %q %q", r.code, r.h.Get("Content-Type"), r.body)
	}
	for _, p := range []string{
		"/api/v1/reports/" + idAt(time.Now()).String(),
		"/api/v1/reports/not-an-id",
		"/api/v1/reports/" + onlyRep.String() + "/evidence", // a submitted report has none
		"/api/v1/reports/" + idAt(time.Now()).String() + "/evidence",
		"/api/v1/nothing",
	} {
		if r := e.get(p, ""); r.code != 404 || r.h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q, want a JSON 404", p, r.code, r.h.Get("Content-Type"))
		}
	}
	if r := e.do("DELETE", "/api/v1/reports/"+id.String(), "", "", nil); r.code != 405 || r.h.Get("Allow") == "" {
		t.Errorf("DELETE: %d %v", r.code, r.h)
	}
}

func TestQuarantineListing(t *testing.T) {
	e := newEnv(t, false, nil)
	id := idAt(time.Now())
	secret := "SECRET-BODY-TEXT"
	raw := []byte("Subject: x\r\n\r\n" + secret + "\r\n")
	m := &store.Message{ID: id, Channel: "fbl", Size: len(raw), Status: store.StatusReceived, Envelope: store.Envelope{Via: "smtp", Rcpts: []string{"fbl@test.example"}}}
	if err := e.st.PutMessages([]*store.Message{m}, [][]byte{raw}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.Quarantine(id, "not an ARF report"); err != nil {
		t.Fatal(err)
	}
	r := e.get("/api/v1/messages?status=quarantined", "")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var l struct {
		Messages []struct{ ID, Channel, Reason, Status string }
	}
	r.json(t, &l)
	if len(l.Messages) != 1 || l.Messages[0].ID != id.String() || l.Messages[0].Reason != "not an ARF report" || l.Messages[0].Channel != "fbl" {
		t.Fatalf("quarantine listing: %s", r.body)
	}
	if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), "fbl@test.example") {
		t.Errorf("the listing shows the body or the envelope: %s", r.body)
	}
	if r := e.get("/api/v1/messages?status=quarantined&channel=plain", ""); !strings.Contains(string(r.body), `"messages":[]`) {
		t.Errorf("channel filter: %s", r.body)
	}
	if r := e.get("/api/v1/messages?status=received", ""); r.code != 400 {
		t.Errorf("status=received: %d", r.code)
	}
}

// The quarantine listing pages like the others: a flood of bounces to a
// trap never turns into one giant response.
func TestQuarantinePaging(t *testing.T) {
	e := newEnv(t, false, nil)
	var want []string
	for i := range 5 {
		id := idAt(time.Now().Add(time.Duration(i) * time.Millisecond))
		m := &store.Message{ID: id, Channel: "fbl", Status: store.StatusQuarantined, Reason: "bounce", Envelope: store.Envelope{Via: "smtp"}}
		if err := e.st.PutMessages([]*store.Message{m}, [][]byte{[]byte("Subject: x\r\n\r\nx\r\n")}); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id.String()}, want...)
	}
	// A record under a key that is no id, longer than one, is quarantined
	// at start under the hex of its key; it sorts first and, with pages
	// of one, is a cursor too.
	long := bytes.Repeat([]byte{0xfe}, 40)
	if err := e.st.Commit(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("records")).Put(long, []byte("junk")) }); err != nil {
		t.Fatal(err)
	}
	if n, err := e.st.Recover(); n != 1 || err != nil {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	want = append([]string{fmt.Sprintf("%x", long)}, want...)
	var got []string
	path := "/api/v1/messages?status=quarantined&limit=1"
	for pages := 0; ; pages++ {
		r := e.get(path, "")
		if r.code != 200 || pages > 6 {
			t.Fatalf("page %d: %d %s", pages, r.code, r.body)
		}
		var l struct {
			Messages []struct {
				ID string `json:"id"`
			} `json:"messages"`
			NextCursor string `json:"next_cursor"`
		}
		r.json(t, &l)
		if len(l.Messages) > 1 {
			t.Fatalf("page of %d with limit=1", len(l.Messages))
		}
		for _, m := range l.Messages {
			got = append(got, m.ID)
		}
		if l.NextCursor == "" {
			break
		}
		path = "/api/v1/messages?status=quarantined&limit=1&cursor=" + url.QueryEscape(l.NextCursor)
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged ids %v, want newest first %v", got, want)
	}
	for _, bad := range []string{"limit=0", "limit=x", "cursor=" + strings.Repeat("f", store.MaxQuarantineCursor+1)} {
		if r := e.get("/api/v1/messages?status=quarantined&"+bad, ""); r.code != 400 {
			t.Errorf("%s: %d", bad, r.code)
		}
	}
}

func TestOutboxListing(t *testing.T) {
	e := newEnv(t, false, nil)
	var entries []store.Entry
	statuses := []store.OutboxStatus{store.OutboxPending, store.OutboxSent, store.OutboxFailed, store.OutboxDryRun, store.OutboxSent}
	for i, s := range statuses {
		id := idAt(time.Now().Add(time.Duration(i) * time.Millisecond))
		entries = append(entries, store.Entry{Report: report(id, "fbl", "198.51.100.1"), Outbox: &store.OutboxEntry{
			ID: id, Channel: "fbl", Status: s, Contact: fmt.Sprintf("abuse%d@example.org", i), Attempts: i, LastError: "451 try later", Created: time.Now().UTC(),
		}})
	}
	if err := e.st.Put(entries); err != nil {
		t.Fatal(err)
	}
	var page struct {
		Entries    []store.OutboxEntry
		NextCursor string `json:"next_cursor"`
	}
	r := e.get("/api/v1/outbox?status=sent", "")
	r.json(t, &page)
	if r.code != 200 || len(page.Entries) != 2 || page.Entries[0].Contact != "abuse4@example.org" || page.Entries[0].Attempts != 4 || page.Entries[0].LastError != "451 try later" {
		t.Fatalf("sent: %d %s", r.code, r.body)
	}
	for _, s := range []string{"pending", "failed", "dry-run"} {
		r := e.get("/api/v1/outbox?status="+s, "")
		page.Entries = nil
		r.json(t, &page)
		if len(page.Entries) != 1 || string(page.Entries[0].Status) != s {
			t.Errorf("%s: %s", s, r.body)
		}
	}
	r = e.get("/api/v1/outbox?limit=3", "")
	r.json(t, &page)
	if len(page.Entries) != 3 || page.NextCursor == "" {
		t.Fatalf("page: %s", r.body)
	}
	r = e.get("/api/v1/outbox?limit=3&cursor="+page.NextCursor, "")
	page.Entries = nil
	r.json(t, &page)
	if len(page.Entries) != 2 || page.NextCursor != "" {
		t.Errorf("second page: %s", r.body)
	}
	if r := e.get("/api/v1/outbox?status=queued", ""); r.code != 400 {
		t.Errorf("bad status: %d", r.code)
	}
	if r := e.get("/api/v1/outbox?status=withheld", ""); r.code != 200 {
		t.Errorf("reporter status withheld: %d %s", r.code, r.body)
	}

	// The rendered message of an entry, as sent.
	id := entries[1].Outbox.ID
	if r := e.get("/api/v1/outbox/"+id.String()+"/message", ""); r.code != 404 {
		t.Errorf("message before rendering: %d", r.code)
	}
	if err := e.st.Commit(func(tx *bbolt.Tx) error {
		return store.PutOutboxMailTx(tx, id, []byte("Subject: report\r\n\r\nbody\r\n"))
	}); err != nil {
		t.Fatal(err)
	}
	r = e.get("/api/v1/outbox/"+id.String()+"/message", "")
	if r.code != 200 || r.h.Get("Content-Type") != "message/rfc822" || string(r.body) != "Subject: report\r\n\r\nbody\r\n" {
		t.Errorf("rendered message: %d %q %q", r.code, r.h.Get("Content-Type"), r.body)
	}
}

func TestSubmitMessage(t *testing.T) {
	e := newEnv(t, true, nil)
	body := []byte("Received: from spam.example (spam.example [198.51.100.23]) by mx.other.example; Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
		"From: spammer@spam.example\r\nTo: victim@trap.test.example\r\nSubject: buy\r\n\r\nhello victim@trap.test.example\r\n")
	r := e.do("POST", "/api/v1/channels/trap/messages?rcpt=victim%40trap.test.example&mail_from=spammer%40spam.example", tokSubmitAll, "message/rfc822", body)
	if r.code != 202 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var res struct{ ID string }
	r.json(t, &res)
	id, err := parseID(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.st.Message(id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Envelope.Via != "http" || m.Envelope.PeerIP.String() != "127.0.0.1" || m.Envelope.MailFrom != "spammer@spam.example" || m.Channel != "trap" ||
		m.Envelope.AuthUser != "token:feeder" {
		t.Errorf("envelope: %+v", m.Envelope)
	}
	raw, _ := e.st.Raw(id)
	if bytes.Contains(bytes.ToLower(raw), []byte("victim@trap")) || slices.Contains(m.Envelope.Rcpts, "victim@trap.test.example") {
		t.Errorf("not redacted: %q %v", raw, m.Envelope.Rcpts)
	}
	if strings.Contains(e.log.String(), "victim") || strings.Contains(e.log.String(), "spammer") {
		t.Errorf("an address from the query reached the log:\n%s", e.log.String())
	}

	big := bytes.Repeat([]byte("x"), 5000) // smtp.max_message_bytes is 4096
	if r := e.do("POST", "/api/v1/channels/plain/messages", tokSubmitAll, "message/rfc822", big); r.code != 413 {
		t.Errorf("oversize: %d %s", r.code, r.body)
	}
	if r := e.do("POST", "/api/v1/channels/plain/messages", tokSubmitAll, "message/rfc822", nil); r.code != 400 {
		t.Errorf("empty: %d", r.code)
	}
	if r := e.do("POST", "/api/v1/channels/plain/messages", tokSubmitAll, "application/json", body); r.code != 415 {
		t.Errorf("wrong type: %d", r.code)
	}
	if r := e.do("POST", "/api/v1/channels/plain/messages?rcpt=nobody", tokSubmitAll, "message/rfc822", body); r.code != 400 || !strings.Contains(string(r.body), "rcpt") {
		t.Errorf("bad rcpt: %d %s", r.code, r.body)
	}
	if n, _ := e.st.Count(); n != 1 {
		t.Errorf("refused submissions were stored: %d messages", n)
	}
}

func TestSubmitReport(t *testing.T) {
	e := newEnv(t, true, nil)
	r := e.do("POST", "/api/v1/channels/fbl/reports", tokSubmitAll, "application/json", []byte(xarfDoc))
	if r.code != 202 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var res struct{ ID string }
	r.json(t, &res)
	id, _ := parseID(res.ID)
	rep, err := e.st.GetReport(id)
	if err != nil || rep.Via != "http" || rep.Channel != "fbl" {
		t.Fatalf("stored: %+v %v", rep, err)
	}
	r = e.do("POST", "/api/v1/channels/fbl/reports", tokSubmitAll, "application/json", []byte(`{"xarf_version": "4.0.0"}`))
	var eb struct {
		Error   string
		Reasons []string
	}
	r.json(t, &eb)
	if r.code != 400 || len(eb.Reasons) != 2 || eb.Reasons[0] != "xarf_version: want 4.2.0" {
		t.Errorf("invalid document: %d %s", r.code, r.body)
	}
	// A redacting channel takes messages only (ingest's rule, shown as 400).
	r = e.do("POST", "/api/v1/channels/trap/reports", tokSubmitAll, "application/json", []byte(xarfDoc))
	if r.code != 400 || !strings.Contains(string(r.body), "reasons") {
		t.Errorf("redacting channel: %d %s", r.code, r.body)
	}
}

func TestInternalErrorsNotEchoed(t *testing.T) {
	e := newEnv(t, false, nil)
	e.st.Close()
	for _, p := range []string{"/api/v1/reports", "/api/v1/outbox", "/api/v1/messages"} {
		r := e.get(p, "")
		if r.code < 500 || strings.Contains(string(r.body), "closed") || strings.Contains(string(r.body), "database") {
			t.Errorf("%s: %d %s", p, r.code, r.body)
		}
		var eb struct {
			RequestID string `json:"request_id"`
		}
		r.json(t, &eb)
		if eb.RequestID == "" || !strings.Contains(e.log.String(), eb.RequestID) {
			t.Errorf("%s: the error is not logged under the request id %q", p, eb.RequestID)
		}
	}
	if r := e.get("/healthz", ""); r.code != 503 {
		t.Errorf("healthz with a closed store: %d", r.code)
	}
}

func TestHealth(t *testing.T) {
	var notReady atomic.Bool
	e := newEnv(t, true, func(o *Options) {
		o.Ready = func() error {
			if notReady.Load() {
				return errors.New("smtp not listening")
			}
			return nil
		}
	})
	if r := e.get("/healthz", ""); r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	notReady.Store(true)
	if r := e.get("/healthz", ""); r.code != 503 || strings.Contains(string(r.body), "smtp") {
		t.Fatalf("not ready: %d %s", r.code, r.body)
	}
	notReady.Store(false)
	e.srv.Shutdown(context.Background())
	if r := e.get("/healthz", ""); r.code != 503 {
		t.Fatalf("shutting down: %d", r.code)
	}
}

func TestBackup(t *testing.T) {
	e := newEnv(t, true, nil)
	id := idAt(time.Now())
	if err := e.st.Put([]store.Entry{{Report: report(id, "fbl", "198.51.100.1")}}); err != nil {
		t.Fatal(err)
	}
	r := e.get("/api/v1/backup", tokAdmin)
	if r.code != 200 || r.h.Get("Content-Type") != "application/octet-stream" ||
		r.h.Get("Content-Length") != strconv.Itoa(len(r.body)) || !strings.HasPrefix(r.h.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("backup: %d %v (%d bytes)", r.code, r.h, len(r.body))
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, store.FileName), r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("backup does not open: %v", err)
	}
	defer st.Close()
	if rep, err := st.GetReport(id); err != nil || rep.Channel != "fbl" {
		t.Fatalf("backup lacks the report: %v", err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, true, nil)
	r := e.get("/metrics", "")
	if r.code != 200 || !strings.Contains(string(r.body), "xarfd_stream_dropped_total") {
		t.Fatalf("%d %s", r.code, r.body)
	}
}

func parseID(s string) (store.ID, error) {
	var id store.ID
	err := id.UnmarshalText([]byte(s))
	return id, err
}
