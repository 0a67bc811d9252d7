package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// Bearer tokens of apiConfig; the configuration holds their sha256.
const (
	e2eRead   = "e2e-read-token"
	e2eSubmit = "e2e-submit-token"
	e2eAdmin  = "e2e-admin-token"
)

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// apiConfig is baseConfig with the HTTP API on a port-0 listener and
// three tokens.
func apiConfig() string {
	return baseConfig + fmt.Sprintf(`
http:
  listen: "127.0.0.1:0"
  tokens:
    - {name: reader, sha256: %q, scopes: [read]}
    - {name: feeder, sha256: %q, scopes: [submit]}
    - {name: operator, sha256: %q, scopes: [admin]}
`, hashHex(e2eRead), hashHex(e2eSubmit), hashHex(e2eAdmin))
}

// httpAddr waits for the daemon's "http listening" line and returns the
// API's base URL.
func httpAddr(t *testing.T, d *daemon) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(d.logs.String(), "\n") {
			var ev struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "http listening" && ev.Addr != "" {
				return "http://" + ev.Addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no \"http listening\" line in the log:\n%s", d.logs.String())
	return ""
}

type apiReply struct {
	code int
	h    http.Header
	body []byte
}

func apiDo(t *testing.T, method, url, token, ctype string, body []byte) apiReply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiReply{resp.StatusCode, resp.Header, b}
}

// sseEvent is one "report" event of the stream.
type sseEvent struct{ id, data string }

// openStream subscribes to /api/v1/stream and returns the report events;
// it returns once the server confirmed the subscription.
func openStream(t *testing.T, base, query, token string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	events := make(chan sseEvent, 100)
	ready := make(chan struct{})
	go func() {
		defer resp.Body.Close()
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var ev sseEvent
		var isReport bool
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": subscribed":
				close(ready)
			case line == "event: report":
				isReport = true
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case line == "":
				if isReport {
					events <- ev
				}
				ev, isReport = sseEvent{}, false
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("stream: not subscribed within 30s")
	}
	return events
}

// waitEvent returns the event with id, failing after a generous wait.
func waitEvent(t *testing.T, events <-chan sseEvent, id string) sseEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended before report %s", id)
			}
			if ev.id == id {
				return ev
			}
		case <-timeout:
			t.Fatalf("no stream event for report %s within 30s", id)
		}
	}
}

// trapMessage is a trap hit relayed to us: its origin is the Received
// hop's client address.
func trapMessage(subject string) []byte {
	return []byte("Received: from spam.origin.example (spam.origin.example [198.51.100.23]) by relay.other.example; Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
		"From: spammer@origin.example\r\nTo: victim@trap.e2e.example\r\nSubject: " + subject + "\r\n" +
		"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@origin.example>\r\n\r\nbuy now, victim@trap.e2e.example\r\n")
}

// TestAPIOverRealBinary: auth, health and metrics, a message submitted
// over HTTP reaching the stream and the queries, and its evidence.
func TestAPIOverRealBinary(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "-config", writeConfig(t, dir, apiConfig()))
	base := httpAddr(t, d)

	if r := apiDo(t, "GET", base+"/healthz", "", "", nil); r.code != 200 {
		t.Fatalf("healthz: %d %s", r.code, r.body)
	}
	if r := apiDo(t, "GET", base+"/metrics", "", "", nil); r.code != 200 || !bytes.Contains(r.body, []byte("xarfd_stream_dropped_total")) {
		t.Fatalf("metrics: %d", r.code)
	}
	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/reports", "", 401},
		{"GET", "/api/v1/reports", "wrong", 401},
		{"GET", "/api/v1/reports", e2eSubmit, 403},
		{"GET", "/api/v1/backup", e2eRead, 403},
		{"POST", "/api/v1/channels/plain/messages", e2eRead, 403},
		{"GET", "/api/v1/reports", e2eRead, 200},
		{"GET", "/api/v1/reports", e2eAdmin, 200},
		{"GET", "/api/v1/reports?since=yesterday", e2eRead, 400},
	} {
		r := apiDo(t, c.method, base+c.path, c.token, "message/rfc822", []byte("Subject: x\r\n\r\nx\r\n"))
		if r.code != c.want {
			t.Errorf("%s %s with %q: %d, want %d: %s", c.method, c.path, c.token, r.code, c.want, r.body)
		}
		if r.code == 401 && r.h.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}

	events := openStream(t, base, "?channel=trap", e2eRead)
	body := trapMessage("http-submitted")
	r := apiDo(t, "POST", base+"/api/v1/channels/trap/messages?rcpt=victim%40trap.e2e.example", e2eSubmit, "message/rfc822", body)
	if r.code != 202 {
		t.Fatalf("submit message: %d %s", r.code, r.body)
	}
	var res struct{ ID string }
	json.Unmarshal(r.body, &res)
	ev := waitEvent(t, events, res.ID)
	var doc struct {
		ReportID         string `json:"report_id"`
		SourceIdentifier string `json:"source_identifier"`
	}
	if err := json.Unmarshal([]byte(ev.data), &doc); err != nil || doc.ReportID != res.ID || doc.SourceIdentifier != "198.51.100.23" {
		t.Fatalf("stream event: %v %s", err, ev.data)
	}
	if strings.Contains(ev.data, "victim@trap") {
		t.Errorf("the streamed report holds the redacted recipient")
	}

	r = apiDo(t, "GET", base+"/api/v1/reports?source_ip=198.51.100.23", e2eRead, "", nil)
	var page struct {
		Reports    []json.RawMessage `json:"reports"`
		NextCursor string            `json:"next_cursor"`
	}
	if json.Unmarshal(r.body, &page); r.code != 200 || len(page.Reports) != 1 || !strings.Contains(string(page.Reports[0]), res.ID) {
		t.Fatalf("listing by source: %d %s", r.code, r.body)
	}
	r = apiDo(t, "GET", base+"/api/v1/reports/"+res.ID+"/evidence", e2eRead, "", nil)
	if r.code != 200 || r.h.Get("Content-Type") != "message/rfc822" || !bytes.Contains(r.body, []byte("Subject: http-submitted")) ||
		bytes.Contains(bytes.ToLower(r.body), []byte("victim@trap")) {
		t.Fatalf("evidence: %d %q\n%s", r.code, r.h.Get("Content-Type"), r.body)
	}
	// The submission was committed: the store's transactions are counted.
	r = apiDo(t, "GET", base+"/metrics", "", "", nil)
	for _, series := range []string{"xarfd_store_transaction_seconds_count", "xarfd_store_transaction_operations_sum"} {
		if !regexp.MustCompile(`(?m)^` + series + ` [1-9]`).Match(r.body) {
			t.Errorf("metrics: no %s of at least 1", series)
		}
	}

	d.stop()
	if logs := d.logs.String(); strings.Contains(logs, "victim@trap") || strings.Contains(logs, e2eSubmit) {
		t.Errorf("a recipient or a token reached the log")
	}
	if !strings.Contains(d.logs.String(), `"message":"http request"`) {
		t.Errorf("no request log lines")
	}
}

// TestAPISubmitXARF: a XARF document POSTed to a channel that does not
// redact is validated by the daemon, stored and streamed; an invalid one
// gets 400 with the reasons. The valid document is one the daemon made
// itself from a trap hit.
func TestAPISubmitXARF(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "-config", writeConfig(t, dir, apiConfig()))
	base := httpAddr(t, d)
	r := apiDo(t, "POST", base+"/api/v1/channels/plain/messages", e2eSubmit, "message/rfc822", trapMessage("to-resubmit"))
	var res struct{ ID string }
	if json.Unmarshal(r.body, &res); r.code != 202 {
		t.Fatalf("submit message: %d %s", r.code, r.body)
	}
	doc := apiDo(t, "GET", base+"/api/v1/reports/"+res.ID, e2eRead, "", nil)
	if doc.code != 200 {
		t.Fatalf("report of the message: %d %s", doc.code, doc.body)
	}
	events := openStream(t, base, "?channel=fbl", e2eAdmin)
	r = apiDo(t, "POST", base+"/api/v1/channels/fbl/reports", e2eSubmit, "application/json", doc.body)
	if r.code != 202 {
		t.Fatalf("submit XARF: %d %s", r.code, r.body)
	}
	json.Unmarshal(r.body, &res)
	waitEvent(t, events, res.ID)
	if got := apiDo(t, "GET", base+"/api/v1/reports/"+res.ID, e2eRead, "", nil); got.code != 200 || !bytes.Contains(got.body, []byte(res.ID)) {
		t.Errorf("submitted report: %d %s", got.code, got.body)
	}
	r = apiDo(t, "POST", base+"/api/v1/channels/fbl/reports", e2eSubmit, "application/json", []byte(`{"xarf_version":"4.2.0"}`))
	if r.code != 400 || !bytes.Contains(r.body, []byte(`"reasons"`)) {
		t.Errorf("invalid XARF: %d %s", r.code, r.body)
	}
	d.stop()
}

// TestAPIStreamsSMTPReports: a trap hit received over SMTP appears on the
// live stream as soon as it is acknowledged.
func TestAPIStreamsSMTPReports(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "-config", writeConfig(t, dir, apiConfig()))
	base := httpAddr(t, d)
	events := openStream(t, base, "", e2eRead)
	ids, err := send(d.addr, "spammer@origin.example", []string{"victim@trap.e2e.example"}, trapMessage("smtp-hit"))
	if err != nil || len(ids) != 1 {
		t.Fatalf("send: %v %v", ids, err)
	}
	ev := waitEvent(t, events, ids[0].String())
	if !strings.Contains(ev.data, `"report_id":"`+ids[0].String()+`"`) || strings.Contains(ev.data, "victim@trap") {
		t.Fatalf("stream event: %s", ev.data)
	}
	r := apiDo(t, "GET", base+"/api/v1/reports/"+ids[0].String(), e2eRead, "", nil)
	if r.code != 200 {
		t.Fatalf("report over the API: %d %s", r.code, r.body)
	}
}

// seedReports stores n reports (alternating fbl and plain) in the data
// directory before the daemon starts; it returns their ids newest first.
func seedReports(t *testing.T, dataDir string, n int) []string {
	t.Helper()
	st, err := store.Open(dataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ids []string
	var entries []store.Entry
	for i := 0; i < n; i++ {
		id, err := store.NewID()
		if err != nil {
			t.Fatal(err)
		}
		ch := []string{"fbl", "plain"}[i%2]
		doc := fmt.Sprintf(`{"xarf_version":"4.2.0","report_id":%q,"category":"messaging","type":"spam","source_identifier":"198.51.100.%d"}`, id, i%200+1)
		entries = append(entries, store.Entry{Report: &store.Report{ID: id, Channel: ch, Via: "smtp",
			SourceIP: netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", i%200+1)), XARF: json.RawMessage(doc)}})
		ids = append(ids, id.String())
	}
	if err := st.Put(entries); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(ids)
	return ids
}

// reportIDsOf reads the report_id of every JSON line of out.
func reportIDsOf(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var v struct {
			ReportID string `json:"report_id"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		ids = append(ids, v.ReportID)
	}
	return ids
}

// TestReportsCommandAndBackup: `xarfd reports` pages through more than
// one page of the API as JSON Lines; the backup taken over HTTP is a
// valid database.
func TestReportsCommandAndBackup(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, apiConfig())
	want := seedReports(t, filepath.Join(dir, "data"), 1205) // > one page of 1000
	d := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, d)
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte(e2eRead+"\n"), 0o600)

	code, out, stderr := runXarfd(t, "reports", "-api", base, "-token-file", tokFile)
	if code != 0 {
		t.Fatalf("reports: exit %d: %s", code, stderr)
	}
	if got := reportIDsOf(t, out); !slices.Equal(got, want) {
		t.Fatalf("reports printed %d ids, want all %d newest first", len(got), len(want))
	}
	code, out, stderr = runXarfd(t, "reports", "-api", base, "-token-file", tokFile, "-channel", "fbl", "-limit", "5")
	if got := reportIDsOf(t, out); code != 0 || len(got) != 5 {
		t.Fatalf("-channel fbl -limit 5: exit %d, %d lines: %s", code, len(got), stderr)
	} else {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.Contains(line, `"report_id"`) || strings.Contains(line, "\t") {
				t.Errorf("not one compact document per line: %q", line)
			}
		}
	}
	code, out, _ = runXarfd(t, "reports", "-api", base, "-token-file", tokFile, "-source-ip", "198.51.100.1", "-since", "1h")
	if got := reportIDsOf(t, out); code != 0 || len(got) != 7 { // i%200 == 0 for i < 1205
		t.Errorf("-source-ip: exit %d, %d reports, want 7", code, len(got))
	}

	// The token from the environment; without any token the API refuses.
	cmd := exec.Command(binary, "reports", "-api", base, "-limit", "2")
	cmd.Env = append(os.Environ(), "XARFD_TOKEN="+e2eAdmin)
	if out, err := cmd.Output(); err != nil || len(reportIDsOf(t, string(out))) != 2 {
		t.Errorf("XARFD_TOKEN: %v %s", err, out)
	}
	cmd = exec.Command(binary, "reports", "-api", base)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, "XARFD_TOKEN=") })
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err == nil || !strings.Contains(errb.String(), "401") {
		t.Errorf("without a token: %v %s", err, errb.String())
	}

	// Hot backup while the daemon runs.
	r := apiDo(t, "GET", base+"/api/v1/backup", e2eAdmin, "", nil)
	if r.code != 200 || r.h.Get("Content-Type") != "application/octet-stream" || r.h.Get("Content-Length") != fmt.Sprint(len(r.body)) {
		t.Fatalf("backup: %d %v, %d bytes", r.code, r.h, len(r.body))
	}
	restore := t.TempDir()
	if err := os.WriteFile(filepath.Join(restore, store.FileName), r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(restore, store.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer st.Close()
	reps, _, err := st.Reports(store.Query{Limit: 1})
	if err != nil || len(reps) != 1 || reps[0].ID.String() != want[0] {
		t.Fatalf("the backup lacks the newest report: %v %v", reps, err)
	}
	d.stop()
}
