package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// Every page renders with the CSP and without inline script, on an open
// console with data in every view.
func TestEveryPageOpen(t *testing.T) {
	e := newEnv(t, false)
	id := e.trapHit("45.142.120.11", "Cheap pills", "\r\nBuy at https://click.spam-domain.biz/x?u=victim@trap.test.example\r\n")
	own := e.trapHit("198.18.0.7", "From a subscriber", "\r\nhello\r\n")
	q := e.accept("trap", "x@trap.test.example", "From: a@b.example\r\nSubject: no hop\r\n\r\nbody\r\n", "127.0.0.1")
	if _, err := e.intel.Mine(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cm.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	cs, err := e.st.ActiveCases()
	if err != nil || len(cs) == 0 {
		t.Fatalf("no case for the own-network report %s: %v %v", own, cs, err)
	}
	c := e.client()
	for _, p := range []string{"/", "/reports", "/reports?channel=trap&evidence=spamtrap&text=pills&period=24h",
		"/reports/" + id.String(), "/reports/" + id.String() + "/evidence", "/reports/" + id.String() + "/evidence?part=1",
		"/quarantine", "/quarantine?channel=trap", "/outbox", "/outbox?status=pending", "/indicators", "/indicators/ip/45.142.120.11",
		"/indicators/domain/spam-domain.biz", "/cases", "/cases?state=open", "/cases/" + cs[0].ID.String(), "/login"} {
		c.page(p, http.StatusOK)
	}
	c.page("/nope", http.StatusNotFound)
	c.page("/reports/"+q.String(), http.StatusNotFound) // quarantined: no report
	c.page("/reports?source_ip=nonsense", http.StatusBadRequest)

	r := c.page("/", http.StatusOK)
	for _, want := range []string{`data-testid="reporter-mode">dry run`, `data-testid="outbox-queue">2 pending`, `data-testid="outbox-failed">0 failed`,
		`data-testid="open-cases">1</a>`, `>trap</a></td><td>trap</td><td>report, store, intel, own</td><td>3</td>`, `data-testid="channel-24h">3 / 2 / 1 / 0<`,
		`data-testid="quarantined-count">1 quarantined`, `<a href="/outbox?status=pending">2 pending</a>`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	if regexp.MustCompile(`data-testid="listed-count">0<`).MatchString(r.body) || !strings.Contains(r.body, `data-testid="listed-count">`) {
		t.Error("overview does not count the listed indicators")
	}
	r = c.page("/reports", http.StatusOK)
	if !strings.Contains(r.body, `data-report-id="`+id.String()+`"`) || !strings.Contains(r.body, `sse-connect="/reports/live`) {
		t.Errorf("reports page lacks the row of %s or the live stream:\n%s", id, r.body)
	}
	r = c.page("/quarantine", http.StatusOK)
	if !strings.Contains(r.body, `data-message-id="`+q.String()+`"`) || !strings.Contains(r.body, "origin") {
		t.Errorf("quarantine page lacks %s with its reason:\n%s", q, r.body)
	}
	r = c.page("/reports/"+id.String(), http.StatusOK)
	for _, want := range []string{"45.142.120.11", `data-testid="report-method">received-chain`, `data-testid="outbox-status">pending`, `&#34;xarf_version&#34;: &#34;4.2.0&#34;`, "bytes of base64"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("report page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "victim@") {
		t.Error("the report page shows the redacted recipient")
	}
	r = c.page("/indicators/ip/45.142.120.11", http.StatusOK)
	if !strings.Contains(r.body, `data-testid="indicator-listed">yes`) {
		t.Errorf("indicator not shown listed:\n%s", r.body)
	}
	// Assets come from the binary, typed, with an ETag.
	for _, a := range []string{"/assets/console.js", "/assets/console.css", "/assets/vendor/htmx.org/htmx.min.js",
		"/assets/vendor/htmx-ext-sse/sse.min.js", "/assets/vendor/uplot/uPlot.iife.min.js", "/assets/vendor/@picocss/pico/pico.classless.min.css"} {
		r := c.get(a)
		if r.code != 200 || r.h.Get("ETag") == "" || len(r.body) < 100 {
			t.Errorf("GET %s = %d %v", a, r.code, r.h)
		}
		if strings.HasSuffix(a, ".js") && !strings.HasPrefix(r.h.Get("Content-Type"), "text/javascript") {
			t.Errorf("GET %s: Content-Type %s", a, r.h.Get("Content-Type"))
		}
	}
}

// The console's pages load htmx, its SSE extension and our script only
// from /assets/, and configure htmx without eval.
func TestLayoutScripts(t *testing.T) {
	e := newEnv(t, false)
	r := e.client().page("/", http.StatusOK)
	for _, want := range []string{`<script src="/assets/vendor/htmx.org/htmx.min.js" defer></script>`,
		`<script src="/assets/vendor/htmx-ext-sse/sse.min.js" defer></script>`, `<script src="/assets/console.js" defer></script>`,
		`"allowEval":false`, `"includeIndicatorStyles":false`, `href="#main"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("layout lacks %s", want)
		}
	}
}

func TestInlineProblemsFindsThem(t *testing.T) {
	bad := `<script>alert(1)</script><a href="javascript:x()">a</a><img src=x onerror="y()"><p style="color:red"><style>p{}</style><div hx-on:click="z()">`
	if got := inlineProblems(bad); len(got) != 7 {
		t.Errorf("inlineProblems found %d of 7: %q", len(got), got)
	}
	if got := inlineProblems(`<script src="/assets/console.js"></script><a href="/x">x</a>`); len(got) != 0 {
		t.Errorf("clean page flagged: %q", got)
	}
}

func TestLoginWithReadToken(t *testing.T) {
	e := newEnv(t, true)
	c := e.client()
	r := c.get("/reports?channel=trap")
	if r.code != http.StatusSeeOther || !strings.HasPrefix(r.h.Get("Location"), "/login?next=%2Freports%3Fchannel%3Dtrap") {
		t.Fatalf("unauthenticated GET = %d %s, want the login page", r.code, r.h.Get("Location"))
	}
	if r := c.get("/outbox"); r.code != http.StatusSeeOther {
		t.Fatalf("unauthenticated /outbox = %d", r.code)
	}
	if r := c.do("POST", "/outbox/"+uuidZero+"/retry", url.Values{}); r.code != http.StatusUnauthorized || !strings.Contains(r.body, "Log in with a token") {
		t.Fatalf("unauthenticated POST = %d\n%s", r.code, r.body)
	}
	c.page("/login", http.StatusOK)
	r = c.login(tokRead, http.StatusSeeOther)
	if r.h.Get("Location") != "/reports" {
		t.Errorf("after login: Location %q, want next", r.h.Get("Location"))
	}
	var ck *http.Cookie
	for _, x := range (&http.Response{Header: r.h}).Cookies() {
		if x.Name == sessionCookie {
			ck = x
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.MaxAge != 12*3600 || len(ck.Value) != 43 {
		t.Fatalf("session cookie = %+v", ck)
	}
	if ck.Secure {
		t.Error("Secure cookie over plain HTTP without http.console.secure_cookie")
	}
	r = c.page("/", http.StatusOK)
	if !strings.Contains(r.body, "Log out (reader)") {
		t.Error("logged-in page does not name the token")
	}
	if strings.Contains(r.body, tokRead) {
		t.Error("a page shows the token's value")
	}
	// Logout needs the CSRF token, then the session is gone.
	if r := c.do("POST", "/logout", url.Values{}); r.code != http.StatusForbidden {
		t.Errorf("logout without CSRF = %d", r.code)
	}
	if r := c.post("/logout", "/", nil); r.code != http.StatusSeeOther {
		t.Errorf("logout = %d", r.code)
	}
	if r := c.get("/"); r.code != http.StatusSeeOther {
		t.Errorf("after logout GET / = %d, want the login page", r.code)
	}
	if e.c.sessions.len() != 0 {
		t.Errorf("%d sessions after logout", e.c.sessions.len())
	}
}

const uuidZero = "01a2472f-c360-70a5-9c19-6949a72726b8"

func TestLoginRefused(t *testing.T) {
	e := newEnv(t, true)
	c := e.client()
	r := c.login("wrong-token", http.StatusUnauthorized)
	if !strings.Contains(r.body, `data-testid="login-error"`) || r.h.Get("Set-Cookie") != "" && strings.Contains(r.h.Get("Set-Cookie"), sessionCookie) {
		t.Errorf("wrong token: no error shown or a session set:\n%s", r.body)
	}
	c.login(tokSubmit, http.StatusForbidden) // no read scope
	// Without the pre-login CSRF token the form is refused.
	if r := c.do("POST", "/login", url.Values{"token": {tokRead}}); r.code != http.StatusForbidden {
		t.Errorf("login without CSRF = %d", r.code)
	}
	if e.c.sessions.len() != 0 {
		t.Errorf("%d sessions after refused logins", e.c.sessions.len())
	}
}

func TestLoginBruteForceLimited(t *testing.T) {
	e := newEnv(t, true)
	c := e.client()
	now := time.Now()
	e.setNow(now)
	for i := 0; i < LoginFailures; i++ {
		c.login("wrong", http.StatusUnauthorized)
	}
	r := c.login(tokRead, http.StatusTooManyRequests) // even the right one
	if r.h.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	e.setNow(now.Add(LoginWindow + time.Second))
	c.login(tokRead, http.StatusSeeOther)
}

func TestSessionExpires(t *testing.T) {
	e := newEnv(t, true)
	c := e.client()
	now := time.Now()
	e.setNow(now)
	c.login(tokRead, http.StatusSeeOther)
	c.page("/", http.StatusOK)
	e.setNow(now.Add(12*time.Hour - time.Second))
	c.page("/", http.StatusOK)
	e.setNow(now.Add(12 * time.Hour))
	r := c.get("/")
	if r.code != http.StatusSeeOther || !strings.Contains(r.h.Get("Location"), "expired") {
		t.Fatalf("expired session: %d %s", r.code, r.h.Get("Location"))
	}
	r = c.page(r.h.Get("Location"), http.StatusOK)
	if !strings.Contains(r.body, "Your session expired") {
		t.Error("the login page does not say the session expired")
	}
}

// A reload that removes the token (or its read scope) ends its sessions
// at the next request.
func TestReloadRemovesToken(t *testing.T) {
	e := newEnv(t, true)
	c := e.client()
	c.login(tokRead, http.StatusSeeOther)
	c.page("/", http.StatusOK)
	cfg := *e.cfg.Load()
	cfg.HTTP.Tokens = []config.Token{cfg.HTTP.Tokens[1]} // writer only
	e.cfg.Store(&cfg)
	r := c.get("/")
	if r.code != http.StatusSeeOther || !strings.Contains(r.h.Get("Location"), "no+longer+configured") {
		t.Fatalf("after the token was removed: %d %s", r.code, r.h.Get("Location"))
	}
}

func TestWriteNeedsSubmitScopeAndCSRF(t *testing.T) {
	e := newEnv(t, true)
	id := e.trapHit("45.142.120.11", "x", "\r\nbody\r\n")
	cancel := "/outbox/" + id.String() + "/cancel"

	reader := e.client()
	reader.login(tokRead, http.StatusSeeOther)
	if r := reader.post(cancel, "/outbox", nil); r.code != http.StatusForbidden || !strings.Contains(r.body, "no submit scope") {
		t.Errorf("cancel by a read token = %d\n%s", r.code, r.body)
	}
	r := reader.page("/outbox", http.StatusOK)
	if strings.Contains(r.body, `data-testid="cancel"`) {
		t.Error("a read-only viewer is offered the cancel button")
	}

	w := e.client()
	w.login(tokWrite, http.StatusSeeOther)
	if r := w.post(cancel, "", nil); r.code != http.StatusForbidden {
		t.Errorf("cancel without CSRF = %d", r.code)
	}
	if r := w.post(cancel, "", url.Values{"csrf": {"AAAA" + strings.Repeat("x", 39)}}); r.code != http.StatusForbidden {
		t.Errorf("cancel with a wrong CSRF token = %d", r.code)
	}
	// Another session's token does not do either.
	other := reader.csrf("/outbox")
	if r := w.post(cancel, "", url.Values{"csrf": {other}}); r.code != http.StatusForbidden {
		t.Errorf("cancel with another session's CSRF token = %d", r.code)
	}
	if r := w.do("POST", cancel, url.Values{}, "X-CSRF-Token", w.csrf("/outbox")); r.code != http.StatusSeeOther {
		t.Errorf("cancel with the CSRF header = %d\n%s", r.code, r.body)
	}
	ent, err := e.st.GetOutbox(id)
	if err != nil || ent.Status != store.OutboxCancelled || !strings.Contains(ent.Reason, "console, token writer") {
		t.Fatalf("after cancel: %+v %v", ent, err)
	}
	r = w.post("/outbox/"+id.String()+"/retry", "/outbox", url.Values{"back": {"/reports/" + id.String()}})
	if r.code != http.StatusSeeOther || r.h.Get("Location") != "/reports/"+id.String()+"?done=retried" {
		t.Fatalf("retry = %d %s", r.code, r.h.Get("Location"))
	}
	if ent, _ := e.st.GetOutbox(id); ent.Status != store.OutboxPending {
		t.Errorf("after retry: %s", ent.Status)
	}
	if r := w.page("/reports/"+id.String()+"?done=retried", http.StatusOK); !strings.Contains(r.body, `data-testid="flash"`) {
		t.Error("no flash after retry")
	}
	// Cancel twice: the second is a conflict.
	w.post(cancel, "/outbox", nil)
	if r := w.post(cancel, "/outbox", nil); r.code != http.StatusConflict {
		t.Errorf("second cancel = %d", r.code)
	}
	// A token restricted to the fbl channel may not act on trap's entries.
	f := e.client()
	f.login(tokFeed, http.StatusSeeOther)
	if r := f.post("/outbox/"+id.String()+"/retry", "/outbox", nil); r.code != http.StatusNotFound {
		t.Errorf("retry of another channel's entry = %d", r.code)
	}
	// A redirect target elsewhere is ignored.
	r = w.post("/outbox/"+id.String()+"/retry", "/outbox", url.Values{"back": {"//evil.example/x"}})
	if loc := r.h.Get("Location"); !strings.HasPrefix(loc, "/outbox?") {
		t.Errorf("back=//evil.example: Location %q", loc)
	}
}

// Without tokens the console is open, but writes still need the CSRF
// token, tied to a cookie of the browser.
func TestOpenConsoleCSRF(t *testing.T) {
	e := newEnv(t, false)
	id := e.trapHit("45.142.120.11", "x", "\r\nbody\r\n")
	c := e.client()
	if r := c.do("POST", "/outbox/"+id.String()+"/cancel", url.Values{}); r.code != http.StatusForbidden {
		t.Errorf("open console, POST without CSRF = %d", r.code)
	}
	tok := c.csrf("/outbox")
	// The token of one browser is worthless in another.
	other := e.client()
	other.get("/outbox")
	if r := other.do("POST", "/outbox/"+id.String()+"/cancel", url.Values{"csrf": {tok}}); r.code != http.StatusForbidden {
		t.Errorf("another browser's CSRF token = %d", r.code)
	}
	if r := c.do("POST", "/outbox/"+id.String()+"/cancel", url.Values{"csrf": {tok}}); r.code != http.StatusSeeOther {
		t.Errorf("with the CSRF token = %d %s", r.code, r.body)
	}
	if ent, _ := e.st.GetOutbox(id); ent.Status != store.OutboxCancelled || !strings.Contains(ent.Reason, "no tokens configured") {
		t.Errorf("after cancel: %+v", ent)
	}
}

func TestConsoleDisabled(t *testing.T) {
	e := newEnv(t, false)
	cfg := *e.cfg.Load()
	cfg.HTTP.Console.Enabled = false
	e.cfg.Store(&cfg)
	if r := e.client().get("/"); r.code != http.StatusNotFound {
		t.Errorf("disabled console: GET / = %d", r.code)
	}
}

func TestEvidencePlaceholdersHighlighted(t *testing.T) {
	e := newEnv(t, false)
	id := e.trapHit("45.142.120.11", "hi", "\r\nunsubscribe: https://x.example/u?e=victim@trap.test.example\r\n")
	r := e.client().page("/reports/"+id.String()+"/evidence", http.StatusOK)
	if !strings.Contains(r.body, `<mark class="redacted" data-testid="redaction" title="redacted by xarfd: recipient data removed">redacted@redacted.invalid</mark>`) {
		t.Errorf("placeholder not highlighted:\n%s", r.body)
	}
	if strings.Contains(r.body, "victim@trap") {
		t.Error("the evidence shows the recipient")
	}
	raw := e.client().get("/reports/" + id.String() + "/evidence.eml")
	if raw.code != 200 || raw.h.Get("Content-Type") != "message/rfc822" || !strings.Contains(raw.body, "redacted@redacted.invalid") {
		t.Errorf("download: %d %v", raw.code, raw.h)
	}
}

func TestHighlightForms(t *testing.T) {
	segs := highlight("a REDACTED@redacted.INVALID b r-0123456789ab@redacted.invalid c redacted%40redacted.invalid mx.redacted.invalid " + digestAlternatives()[:32])
	var marks []string
	for _, s := range segs {
		if s.Mark {
			marks = append(marks, s.Text)
		}
	}
	want := []string{"REDACTED@redacted.INVALID", "r-0123456789ab@redacted.invalid", "redacted.invalid", "redacted.invalid", digestAlternatives()[:32]}
	if strings.Join(marks, "|") != strings.Join(want, "|") {
		t.Errorf("marks = %q\nwant %q", marks, want)
	}
	if got := highlight("bad \xff utf8"); got[0].Text != "bad \uFFFD utf8" {
		t.Errorf("invalid UTF-8 = %q", got[0].Text)
	}
}

// A hostile message is shown as text: its script, its javascript: link,
// its onerror attribute and its huge header are escaped, in the whole
// message and in the part view; its HTML renders only in the sandbox.
func TestHostileEvidenceEscaped(t *testing.T) {
	e := newEnv(t, false)
	huge := "X-Huge: " + strings.Repeat("<script>alert('h')</script>", 4000) + "\r\n"
	body := "MIME-Version: 1.0\r\n" + huge + "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><script>alert(document.cookie)</script>" +
		`<a href="javascript:alert(1)">click</a><img src="x" onerror="alert(2)"><iframe src="https://evil.example/"></iframe>` +
		"<style>body{background:url(https://evil.example/t.png)}</style></body></html>\r\n--b--\r\n"
	id := e.trapHit("45.142.120.11", "<script>alert('subject')</script>", body)
	c := e.client()
	for _, p := range []string{"/reports/" + id.String() + "/evidence", "/reports/" + id.String() + "/evidence?part=2",
		"/reports/" + id.String() + "/evidence?part=2&render=1", "/reports/" + id.String(), "/reports"} {
		r := c.page(p, http.StatusOK) // checkPage: no inline script, handler or javascript: URL got through
		if strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, "<img src=\"x\"") || strings.Contains(r.body, "<iframe src=\"https://evil") {
			t.Errorf("GET %s: hostile markup unescaped", p)
		}
	}
	r := c.page("/reports/"+id.String()+"/evidence?part=2", http.StatusOK)
	if !strings.Contains(r.body, "&lt;script&gt;alert(document.cookie)&lt;/script&gt;") || !strings.Contains(r.body, "onerror=&#34;alert(2)&#34;") {
		t.Errorf("the HTML part is not shown as escaped source:\n%s", short(3000, r.body))
	}
	r = c.page("/reports/"+id.String()+"/evidence?part=2&render=1", http.StatusOK)
	if !strings.Contains(r.body, `<iframe sandbox="" src="/reports/`+id.String()+`/evidence/part/2"`) {
		t.Errorf("no sandboxed frame:\n%s", r.body)
	}
	part := c.get("/reports/" + id.String() + "/evidence/part/2")
	if part.code != 200 || part.h.Get("Content-Security-Policy") != EvidencePartCSP || !strings.HasPrefix(EvidencePartCSP, "sandbox;") ||
		strings.Contains(EvidencePartCSP, "script-src") {
		t.Errorf("sandboxed part: %d %v", part.code, part.h)
	}
	if c.get("/reports/"+id.String()+"/evidence/part/1").code != http.StatusNotFound {
		t.Error("a text/plain part served as HTML")
	}
}

// A new report appears on the reports page's live stream as a rendered
// row; one the filters exclude does not.
func TestLiveReports(t *testing.T) {
	e := newEnv(t, false)
	req, _ := http.NewRequestWithContext(waitCtx(t), "GET", e.ts.URL+"/reports/live?text=wanted", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live: %d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); l != ": subscribed\n" {
		t.Fatalf("first line %q", l)
	}
	e.trapHit("45.142.120.11", "not this one", "\r\nbody\r\n")
	id := e.trapHit("45.142.120.12", "the wanted one", "\r\nbody\r\n")
	var ev []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v (got %q)", err, ev)
		}
		if strings.HasPrefix(l, ":") || strings.HasPrefix(l, "retry:") || (l == "\n" && len(ev) == 0) {
			continue
		}
		if l == "\n" {
			break
		}
		ev = append(ev, strings.TrimSuffix(l, "\n"))
	}
	if ev[0] != "event: report" || ev[1] != "id: "+id.String() {
		t.Fatalf("event = %q, want the wanted report %s", ev, id)
	}
	row := ""
	for _, l := range ev[2:] {
		row += strings.TrimPrefix(l, "data: ") + "\n"
	}
	if !strings.Contains(row, `data-report-id="`+id.String()+`"`) || !strings.Contains(row, `class="fresh"`) || len(inlineProblems(row)) > 0 {
		t.Errorf("row = %s", row)
	}
}

func TestReportFilters(t *testing.T) {
	e := newEnv(t, false)
	a := e.trapHit("45.142.120.11", "alpha offer", "\r\nbody\r\n")
	b := e.trapHit("45.142.120.12", "beta offer", "\r\nbody\r\n")
	c := e.client()
	has := func(q string, want, not store.ID) {
		t.Helper()
		r := c.page("/reports?"+q, http.StatusOK)
		if !strings.Contains(r.body, `data-report-id="`+want.String()+`"`) || strings.Contains(r.body, `data-report-id="`+not.String()+`"`) {
			t.Errorf("?%s: want %s and not %s", q, want, not)
		}
	}
	has("text=ALPHA", a, b)
	has("source_ip=45.142.120.12", b, a)
	has("evidence=spamtrap&text=beta", b, a)
	has("channel=trap&period=1h&text=alpha", a, b)
	has("method=received-chain&text=beta", b, a)
	r := c.page("/reports?method=smtp-peer", http.StatusOK)
	if strings.Contains(r.body, `data-testid="report-row"`) {
		t.Error("method=smtp-peer lists relayed trap hits")
	}
	c.page("/reports?method=telepathy", http.StatusBadRequest)
	r = c.page("/reports?evidence=user_complaint", http.StatusOK)
	if !strings.Contains(r.body, `data-testid="empty-reports"`) || strings.Contains(r.body, `data-testid="report-row"`) {
		t.Error("no empty state for a filter that matches nothing")
	}
	c.page("/reports?channel=nope", http.StatusBadRequest)
	c.page("/reports?from=yesterday", http.StatusBadRequest)
}

func TestCaseActions(t *testing.T) {
	e := newEnv(t, false)
	e.trapHit("198.18.0.7", "from a subscriber", "\r\nhello\r\n")
	if _, err := e.cm.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	cs, err := e.st.ActiveCases()
	if err != nil || len(cs) != 1 {
		t.Fatalf("cases = %v %v", cs, err)
	}
	c := e.client()
	if r := c.page("/", http.StatusOK); !strings.Contains(r.body, `data-testid="open-cases">1</a>`) {
		t.Error("the overview does not count the open case")
	}
	path := "/cases/" + cs[0].ID.String()
	r := c.page(path, http.StatusOK)
	if !strings.Contains(r.body, "sub-1") || !strings.Contains(r.body, `data-testid="case-resolve"`) {
		t.Errorf("case page:\n%s", r.body)
	}
	if r := c.post(path+"/resolve", path, url.Values{"reason": {"  "}}); r.code != http.StatusBadRequest {
		t.Errorf("resolve without reason = %d", r.code)
	}
	if r := c.post(path+"/explode", path, url.Values{"reason": {"x"}}); r.code != http.StatusNotFound {
		t.Errorf("unknown action = %d", r.code)
	}
	if r := c.post(path+"/resolve", path, url.Values{"reason": {"talked to them"}}); r.code != http.StatusSeeOther {
		t.Fatalf("resolve = %d %s", r.code, r.body)
	}
	got, err := e.st.GetCase(cs[0].ID)
	if err != nil || got.State != store.CaseResolved || got.History[len(got.History)-1].Reason != "talked to them" {
		t.Fatalf("after resolve: %+v %v", got, err)
	}
	r = c.page(path, http.StatusOK)
	if !strings.Contains(r.body, "talked to them") {
		t.Error("history does not show the reason")
	}
	// A resolved case takes no action: the page offers none.
	if strings.Contains(r.body, `class="case-action"`) || !strings.Contains(r.body, `data-testid="case-no-action"`) {
		t.Errorf("a resolved case still offers actions:\n%s", r.body)
	}
	if r := c.page("/", http.StatusOK); !strings.Contains(r.body, `data-testid="open-cases">0</a>`) {
		t.Error("the overview still counts the resolved case")
	}
}

func TestDelist(t *testing.T) {
	e := newEnv(t, false)
	e.trapHit("45.142.120.11", "x", "\r\nbody\r\n")
	if _, err := e.intel.Mine(); err != nil {
		t.Fatal(err)
	}
	c := e.client()
	p := "/indicators/ip/45.142.120.11"
	if r := c.post(p+"/delist", p, nil); r.code != http.StatusBadRequest {
		t.Errorf("delist without reason = %d", r.code)
	}
	r := c.post(p+"/delist", p, url.Values{"reason": {"customer cleaned the host"}})
	if r.code != http.StatusSeeOther {
		t.Fatalf("delist = %d %s", r.code, r.body)
	}
	r = c.page(p, http.StatusOK)
	if !strings.Contains(r.body, `data-testid="indicator-listed">no`) || !strings.Contains(r.body, "customer cleaned the host") {
		t.Errorf("after delist:\n%s", r.body)
	}
	// A lookup goes to the indicator's page, normalised.
	if r := c.get("/indicators?kind=domain&value=Spam-Domain.BIZ"); r.code != http.StatusSeeOther || r.h.Get("Location") != "/indicators/domain/spam-domain.biz" {
		t.Errorf("lookup = %d %s", r.code, r.h.Get("Location"))
	}
}

// Without intel and cases the views say how to enable them.
func TestEmptyStates(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.Intel, o.Cases = nil, nil })
	cfg := *e.cfg.Load()
	cfg.Channels = append([]config.Channel(nil), cfg.Channels...)
	cfg.Channels[1].Uses = []config.Use{config.UseReport, config.UseStore}
	e.cfg.Store(&cfg)
	c := e.client()
	for p, want := range map[string]string{"/indicators": "empty-indicators", "/cases": "empty-cases", "/reports": "empty-reports",
		"/quarantine": "empty-quarantine", "/outbox": "empty-outbox"} {
		if r := c.page(p, http.StatusOK); !strings.Contains(r.body, `data-testid="`+want+`"`) {
			t.Errorf("%s: no %s", p, want)
		}
	}
}

func TestOverviewStats(t *testing.T) {
	e := newEnv(t, false)
	e.trapHit("45.142.120.11", "a", "\r\nbody\r\n")
	e.trapHit("45.142.120.12", "b", "\r\nbody\r\n")
	e.accept("trap", "x@trap.test.example", "From: a@b.example\r\nSubject: no hop\r\n\r\nbody\r\n", "127.0.0.1")
	now := time.Now().Add(time.Minute) // the hour of the messages is in range, even at an hour's end
	e.setNow(now)
	c := e.client()
	sum := func(a []uint64) (n uint64) {
		for _, x := range a {
			n += x
		}
		return n
	}
	for _, rg := range []string{"24h", "30d"} {
		r := c.get("/overview/stats.json?range=" + rg)
		if r.code != 200 || r.h.Get("Content-Type") != "application/json" {
			t.Fatalf("stats %s: %d %v", rg, r.code, r.h)
		}
		var st chartStats
		if err := json.Unmarshal([]byte(r.body), &st); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"24h": 24, "30d": 720}[rg]
		if len(st.Hours) != want || len(st.Channels) != 1 || st.Channels[0].Name != "trap" {
			t.Fatalf("stats %s: %d hours, channels %+v", rg, len(st.Hours), st.Channels)
		}
		ch := st.Channels[0]
		last := len(st.Hours) - 1
		if sum(ch.Messages) != 3 || sum(ch.Reports) != 2 || sum(ch.Quarantined) != 1 || sum(ch.Sent) != 0 || len(ch.Sent) != want {
			t.Errorf("stats %s: %d messages, %d reports, %d quarantined, %d sent", rg, sum(ch.Messages), sum(ch.Reports), sum(ch.Quarantined), sum(ch.Sent))
		}
		if st.Hours[last] != now.UTC().Truncate(time.Hour).Unix() {
			t.Errorf("stats %s: the last point is %d, not this hour", rg, st.Hours[last])
		}
	}
	if r := c.get("/overview/stats.json?range=1y"); r.code != http.StatusBadRequest {
		t.Errorf("range=1y: %d", r.code)
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The evidence rendering of a hostile message, placeholders marked and
// everything else escaped, is pinned in a golden file.
func TestEvidenceGolden(t *testing.T) {
	raw, err := os.ReadFile("testdata/hostile.eml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	head, body := splitHeader(raw)
	var buf bytes.Buffer
	for _, part := range [][]byte{head, body} {
		buf.WriteString("<pre>")
		if err := p.rows.ExecuteTemplate(&buf, "segs", highlight(string(part))); err != nil {
			t.Fatal(err)
		}
		buf.WriteString("</pre>\n")
	}
	if probs := inlineProblems(buf.String()); len(probs) > 0 {
		t.Errorf("rendered evidence: %q", probs)
	}
	const golden = "testdata/hostile.golden.html"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("rendered evidence differs from %s (go test -run EvidenceGolden -update):\n%s", golden, buf.String())
	}
}

// Reprocess after a fix (here: a relay no longer trusted) turns a
// quarantined message into a report under its id; delete removes one.
func TestQuarantineReprocessAndDelete(t *testing.T) {
	e := newEnv(t, false)
	q := e.trapHit("203.0.113.9", "via a trusted relay only", "\r\nbody\r\n")
	gone := e.accept("trap", "x@trap.test.example", "From: a@b.example\r\nSubject: no hop\r\n\r\nbody\r\n", "127.0.0.1")
	c := e.client()
	r := c.page("/quarantine", http.StatusOK)
	if !strings.Contains(r.body, `data-message-id="`+q.String()+`"`) || !strings.Contains(r.body, `data-testid="reprocess"`) {
		t.Fatalf("quarantine page:\n%s", r.body)
	}
	// Unchanged configuration: still quarantined.
	r = c.post("/quarantine/"+q.String()+"/reprocess", "/quarantine", nil)
	if r.code != http.StatusSeeOther || r.h.Get("Location") != "/quarantine?done=still" {
		t.Fatalf("reprocess, no fix: %d %s", r.code, r.h.Get("Location"))
	}
	// The fix, as a reload does it.
	cfg := *e.cfg.Load()
	cfg.Channels = append([]config.Channel(nil), cfg.Channels...)
	cfg.Channels[1].TrustedRelays = nil
	in, err := ingest.New(&cfg, e.st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.inP.Store(in)
	e.cfg.Store(&cfg)
	r = c.post("/quarantine/"+q.String()+"/reprocess", "/quarantine", nil)
	if r.code != http.StatusSeeOther || r.h.Get("Location") != "/reports/"+q.String()+"?done=reprocessed" {
		t.Fatalf("reprocess after the fix: %d %s\n%s", r.code, r.h.Get("Location"), r.body)
	}
	if r := c.page(r.h.Get("Location"), http.StatusOK); !strings.Contains(r.body, "203.0.113.9") || !strings.Contains(r.body, `data-testid="flash"`) {
		t.Errorf("the new report's page:\n%s", r.body)
	}
	if r := c.post("/quarantine/"+q.String()+"/reprocess", "/quarantine", nil); r.code != http.StatusConflict {
		t.Errorf("reprocess of a report = %d", r.code)
	}
	tok := url.Values{"csrf": {c.csrf("/quarantine")}}
	if r := c.post("/quarantine/"+gone.String()+"/delete", "", tok); r.code != http.StatusSeeOther {
		t.Fatalf("delete = %d %s", r.code, r.body)
	}
	if _, err := e.st.Message(gone); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if r := c.post("/quarantine/"+gone.String()+"/delete", "", tok); r.code != http.StatusNotFound {
		t.Errorf("second delete = %d", r.code)
	}
	if r := c.page("/quarantine", http.StatusOK); !strings.Contains(r.body, `data-testid="empty-quarantine"`) {
		t.Error("quarantine not empty after reprocess and delete")
	}
}

func TestQuarantineActionsNeedSubmit(t *testing.T) {
	e := newEnv(t, true)
	q := e.accept("trap", "x@trap.test.example", "From: a@b.example\r\nSubject: no hop\r\n\r\nbody\r\n", "127.0.0.1")
	c := e.client()
	c.login(tokRead, http.StatusSeeOther)
	for _, a := range []string{"reprocess", "delete"} {
		if r := c.post("/quarantine/"+q.String()+"/"+a, "/quarantine", nil); r.code != http.StatusForbidden {
			t.Errorf("%s by a read token = %d", a, r.code)
		}
	}
	if _, err := e.st.Message(q); err != nil {
		t.Errorf("the message is gone: %v", err)
	}
}

// A dry-run entry shows its rendered message, as plain text, and can be
// retried.
func TestOutboxRenderedMessage(t *testing.T) {
	e := newEnv(t, false)
	id := e.trapHit("45.142.120.11", "x", "\r\nbody\r\n")
	now := time.Now().UTC()
	if _, err := e.st.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	raw := "Subject: Abuse report\r\n\r\n<script>alert(1)</script>\r\n"
	if _, err := e.st.DryRun(id, now, &store.RenderedMail{Format: "xarf", Subject: "Abuse report", Preview: "Subject: Abuse report", Raw: []byte(raw)}, "dry run"); err != nil {
		t.Fatal(err)
	}
	c := e.client()
	r := c.page("/reports/"+id.String(), http.StatusOK)
	if !strings.Contains(r.body, `data-testid="outbox-status">dry-run`) || !strings.Contains(r.body, `href="/outbox/`+id.String()+`/message"`) ||
		!strings.Contains(r.body, `data-testid="retry"`) || strings.Contains(r.body, `data-testid="cancel"`) {
		t.Errorf("report page of a dry-run entry:\n%s", r.body)
	}
	m := c.get("/outbox/" + id.String() + "/message")
	if m.code != 200 || m.body != raw || m.h.Get("Content-Type") != "text/plain; charset=utf-8" || m.h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("rendered message: %d %v %q", m.code, m.h, m.body)
	}
	r = c.page("/outbox?status=dry-run", http.StatusOK)
	if !strings.Contains(r.body, `data-outbox-id="`+id.String()+`"`) {
		t.Error("dry-run tab lacks the entry")
	}
	c.page("/outbox?status=bogus", http.StatusBadRequest)
}

// A filtered listing that reaches the scan bound says so and continues
// from where it stopped.
func TestReportScanBound(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.scan = 2 })
	want := e.trapHit("45.142.120.11", "needle", "\r\nbody\r\n")
	e.trapHit("45.142.120.12", "hay", "\r\nbody\r\n")
	e.trapHit("45.142.120.13", "hay", "\r\nbody\r\n")
	c := e.client()
	r := c.page("/reports?text=needle", http.StatusOK)
	if !strings.Contains(r.body, `data-testid="scan-note"`) || strings.Contains(r.body, `data-testid="report-row"`) {
		t.Fatalf("first page: no scan note, or a row:\n%s", r.body)
	}
	next := regexp.MustCompile(`href="(/reports\?[^"]*cursor=[^"]*)" data-testid="next-page"`).FindStringSubmatch(r.body)
	if next == nil {
		t.Fatal("no next page")
	}
	r = c.page(html.UnescapeString(next[1]), http.StatusOK)
	if !strings.Contains(r.body, `data-report-id="`+want.String()+`"`) {
		t.Errorf("the continued page lacks the match:\n%s", r.body)
	}
}

// The live streams are bounded: one more than the limit is answered 503
// (the page's stream retries), and a closed one frees its place.
func TestLiveStreamsBounded(t *testing.T) {
	m := metrics.New()
	e := newEnv(t, false, func(o *Options) { o.maxLive, o.Metrics = 1, m })
	ctx, cancel := context.WithCancel(waitCtx(t))
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/reports/live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first stream: %v %v", resp, err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if r := e.client().get("/reports/live"); r.code != http.StatusServiceUnavailable || r.h.Get("Retry-After") == "" {
		t.Errorf("second stream = %d %v", r.code, r.h)
	}
	// Counted apart from the API's refusals (its own limit).
	if got := refusedStreams(t, m); got[metrics.StreamConsole] != 1 || got[metrics.StreamAPI] != 0 {
		t.Errorf("xarfd_stream_refused_total = %v, want 1 for the console and 0 for the API", got)
	}
	cancel()
	resp.Body.Close()
	// The handler notices the closed connection on its own; wait for it
	// without a timed assertion (waitCtx bounds the test).
	guard := waitCtx(t)
	for e.c.live.Load() != 0 {
		select {
		case <-guard.Done():
			t.Fatal("the closed stream was not released")
		case <-time.After(10 * time.Millisecond):
		}
	}
	req, _ = http.NewRequestWithContext(waitCtx(t), "GET", e.ts.URL+"/reports/live", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream after the first closed: %v %v", resp, err)
	}
	resp.Body.Close()
}

// A sent entry keeps the error of an earlier attempt; the pages must not
// present it as the entry's present state. The evidence counts its
// placeholders in words that agree with the number.
func TestSentEntryEarlierError(t *testing.T) {
	e := newEnv(t, false)
	id := e.trapHit("45.142.120.11", "x", "\r\nbody\r\n") // one placeholder: To
	now := time.Now().UTC()
	if _, err := e.st.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Retry(id, now, now, "550 5.7.1 refused", "desk refused", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	m := &store.RenderedMail{Format: "xarf", Subject: "Abuse report", Preview: "Subject: Abuse report", Raw: []byte("Subject: Abuse report\r\n\r\nx\r\n")}
	if _, _, err := e.st.BeginDelivery(id, now, time.Minute, 0, m); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.MarkSent(id, now, "", false); err != nil {
		t.Fatal(err)
	}
	c := e.client()
	r := c.page("/reports/"+id.String(), http.StatusOK)
	if !strings.Contains(r.body, "<dt>Error before it was sent</dt>") || strings.Contains(r.body, "<dt>Last error</dt>") {
		t.Errorf("report page of a sent entry with an earlier error:\n%s", r.body)
	}
	r = c.page("/outbox?status=sent", http.StatusOK)
	if !strings.Contains(r.body, "before it was sent: 550 5.7.1 refused") {
		t.Errorf("outbox row of a sent entry:\n%s", r.body)
	}
	r = c.page("/reports/"+id.String()+"/evidence", http.StatusOK)
	if !strings.Contains(r.body, "data: 1 place shown.") {
		t.Errorf("placeholder count of one:\n%s", r.body)
	}
}

// refusedStreams reads xarfd_stream_refused_total by its interface label.
func refusedStreams(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "xarfd_stream_refused_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "interface" {
					out[l.GetValue()] = s.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// The cases list pages through every case with its cursor, a state tab
// included, and never shows a case twice.
func TestCasesListPages(t *testing.T) {
	e := newEnv(t, false)
	const n = 2*pageSize + 7
	err := e.st.UpdateCases(store.ID{}, func(tx *store.CaseTx) error {
		for i := range n {
			id, err := store.NewID()
			if err != nil {
				return err
			}
			state := store.CaseOpen
			if i%2 == 1 {
				state = store.CaseResolved
			}
			if err := tx.Put(&store.Case{ID: id, Key: fmt.Sprintf("subscriber:s-%03d", i), SubscriberID: "s", State: state}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client()
	for state, want := range map[string]int{"": n, store.CaseResolved: n / 2} {
		seen := map[string]bool{}
		path := "/cases?" + url.Values{"state": {state}}.Encode()
		for pages := 0; path != ""; pages++ {
			if pages > n {
				t.Fatalf("state %q: the cursor never ends", state)
			}
			r := c.page(path, http.StatusOK)
			for _, m := range regexp.MustCompile(`>subscriber:s-(\d+)</a>`).FindAllStringSubmatch(r.body, -1) {
				if seen[m[1]] {
					t.Errorf("state %q: case %s shown twice", state, m[1])
				}
				seen[m[1]] = true
			}
			path = ""
			if m := regexp.MustCompile(`href="(/cases\?[^"]*cursor=[^"]*)" data-testid="next-page"`).FindStringSubmatch(r.body); m != nil {
				path = html.UnescapeString(m[1])
			}
		}
		if len(seen) != want {
			t.Errorf("state %q: %d cases over all pages, want %d", state, len(seen), want)
		}
	}
	c.page("/cases?cursor=nonsense", http.StatusBadRequest)
}
