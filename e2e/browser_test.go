package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/xarfd/xarfd/store"
)

// TestBrowserHarness checks the checker: a page with a strict CSP that
// breaks it, logs an error and throws must be caught on every count, and a
// clean page must give nothing. Without it a harness that saw nothing
// would pass every console test.
func TestBrowserHarness(t *testing.T) {
	mux := http.NewServeMux()
	const csp = "default-src 'none'; script-src 'self'; img-src 'self'; style-src 'self'"
	mux.HandleFunc("/clean", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><title>clean</title><p id=ok>fine</p><script src="/ok.js"></script>`))
	})
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/ok.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write([]byte(`document.getElementById("ok").dataset.ran = "yes";`))
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><title>bad</title><p id=bad>bad</p>
<script>window.inlineRan = true</script>
<script src="/throw.js"></script>`))
	})
	mux.HandleFunc("/throw.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write([]byte(`console.error("harness-console-error"); throw new Error("harness-uncaught");`))
	})
	srv := httptest.NewServer(mux)
	// Closed after the browser (cleanups run last first): the browser
	// may still ask for the favicon after the last check.
	t.Cleanup(srv.Close)

	b := newBrowser(t)
	ctx := b.scenario(t)

	b.do(t, ctx, "loading a clean page", chromedp.Navigate(srv.URL+"/clean"), chromedp.WaitReady(chromedp.CSS(`#ok[data-ran="yes"]`)))
	if ps := b.takeProblems(); len(ps) != 0 {
		t.Errorf("a clean page gave problems: %v", ps)
	}

	b.do(t, ctx, "loading a bad page", chromedp.Navigate(srv.URL+"/bad"), chromedp.WaitReady(chromedp.CSS(`#bad`)))
	want := map[string]bool{"csp": false, "exception": false, "console.error": false}
	// The CSP issue may arrive a moment after the load; wait for all three.
	var got []problem
	waitFor(t, ctx, "every kind of problem of the bad page", func() bool {
		got = append(got, b.takeProblems()...)
		for _, p := range got {
			if _, ok := want[p.kind]; ok {
				want[p.kind] = true
			}
		}
		for _, seen := range want {
			if !seen {
				return false
			}
		}
		return true
	})
	var texts []string
	for _, p := range got {
		texts = append(texts, p.String())
	}
	all := strings.Join(texts, "\n")
	for _, s := range []string{"harness-console-error", "harness-uncaught", "script-src"} {
		if !strings.Contains(all, s) {
			t.Errorf("problems do not mention %q:\n%s", s, all)
		}
	}
	if ran := evalJS[bool](t, ctx, `window.inlineRan === true`); ran {
		t.Error("the inline script ran despite the CSP")
	}
	t.Logf("problems of the bad page:\n%s", all)
}

// The console's markup the scenarios rely on (docs/ui.md).
const (
	tokenInput      = `input[name="token"][data-testid="login-token"]`
	placeholderSel  = `mark.redacted[data-testid="redaction"]`
	logoutButton    = `form[action="/logout"] button`
	liveMarkerAttr  = `data-e2e-sse-open`
	placeholderText = "redacted@redacted.invalid"
)

// views are the console's pages that need no id, with a name for their
// screenshots. This daemon uses neither intel nor own networks: its
// Indicators and Cases views say how to enable them ("-off");
// TestBrowserIntelAndCases shoots them configured.
var views = []struct{ name, path string }{
	{"overview", "/"},
	{"reports", "/reports"},
	{"quarantine", "/quarantine"},
	{"outbox", "/outbox"},
	{"indicators-off", "/indicators"},
	{"cases-off", "/cases"},
}

// login logs in with token on the login page the browser is on (or is
// sent to) and returns the status of the page it lands on.
func (b *browser) login(t *testing.T, ctx context.Context, base, token string) int64 {
	t.Helper()
	if loc := evalJS[string](t, ctx, `location.pathname`); loc != "/login" {
		b.openOK(t, ctx, base+"/login")
	}
	b.do(t, ctx, "typing the token", chromedp.WaitVisible(chromedp.CSS(tokenInput)), chromedp.SendKeys(chromedp.CSS(tokenInput), token))
	return b.submitNav(t, ctx, "submitting the login form", chromedp.SendKeys(chromedp.CSS(tokenInput), kb.Enter))
}

// TestBrowserConsole drives the console of a real daemon in a real
// Chromium, one scenario after the other on one daemon and one browser:
// each scenario needs the state the one before left (a session, a
// report, its outbox entry).
func TestBrowserConsole(t *testing.T) {
	chromiumPath(t) // skip or fail before starting anything
	env := startConsoleDaemon(t)
	b := newBrowser(t)
	shots := artifactsDir(t)
	start := time.Now()
	defer func() { t.Logf("browser scenarios took %s", time.Since(start).Round(time.Millisecond)) }()

	// The htmx SSE extension says when its stream is open; a test hook
	// (added through DevTools, so outside the page's CSP) marks the
	// document then, so the test sends its message only once the page
	// listens.
	if _, err := chromedp.Call(b.ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `document.addEventListener("htmx:sseOpen", () => document.documentElement.setAttribute("` + liveMarkerAttr + `", "1"), true);`,
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("login", func(t *testing.T) {
		ctx := b.scenario(t)
		b.open(t, ctx, env.base+"/reports")
		if loc := evalJS[string](t, ctx, `location.pathname`); loc != "/login" {
			t.Fatalf("without a session /reports went to %s, want /login", loc)
		}
		if code := b.login(t, ctx, env.base, "not-a-configured-token"); code != http.StatusUnauthorized {
			t.Errorf("a wrong token answered %d, want 401", code)
		}
		if evalJS[string](t, ctx, `location.pathname`) != "/login" || !evalJS[bool](t, ctx, `!!document.querySelector(`+jsString(tokenInput)+`)`) {
			t.Fatal("after a wrong token the login form is not shown again")
		}
		msg := evalJS[string](t, ctx, `(document.querySelector('[data-testid="login-error"][role="alert"]') || {}).textContent || ""`)
		if !strings.Contains(strings.ToLower(msg), "token") {
			t.Errorf("a wrong token shows no alert about the token: %q", msg)
		}
		if strings.Contains(msg, "not-a-configured-token") {
			t.Error("the page echoes the wrong token")
		}
		// The 401 of the wrong token is the one error Chromium logs here.
		b.expectOnly(t, func(p problem) bool {
			return p.kind == "log.network" && strings.Contains(p.text, "401") && strings.Contains(p.url, "/login")
		})

		if code := b.login(t, ctx, env.base, consoleOps); code != 200 {
			t.Fatalf("logging in with the operator's token answered %d", code)
		}
		if loc := evalJS[string](t, ctx, `location.pathname`); loc != "/reports" {
			t.Errorf("after the login the browser is on %s, want /reports (where it was going)", loc)
		}
		if evalJS[bool](t, ctx, `document.cookie.includes("xarfd_session")`) {
			t.Error("the session cookie is readable from JavaScript (not HttpOnly)")
		}
		// The cookie as the browser holds it: HttpOnly, SameSite=Strict,
		// expiring (http.console.session_ttl, 12h by default).
		jar, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{env.base + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		var session *network.Cookie
		for _, c := range jar.Cookies {
			if c.Name == "xarfd_session" {
				session = c
			}
		}
		switch {
		case session == nil:
			t.Error("the browser holds no xarfd_session cookie after the login")
		case !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict || session.Session ||
			time.Unix(int64(session.Expires), 0).After(time.Now().Add(13*time.Hour)):
			t.Errorf("session cookie: HttpOnly %v, SameSite %q, session-only %v, expires %s; want HttpOnly, Strict, expiring within 12h",
				session.HTTPOnly, session.SameSite, session.Session, time.Unix(int64(session.Expires), 0).UTC())
		}
		b.expectClean(t)
	})

	var liveID, liveRcpt string
	t.Run("live report", func(t *testing.T) {
		ctx := b.scenario(t)
		b.openOK(t, ctx, env.base+"/reports")
		waitJS(t, ctx, "the live stream to open", `document.documentElement.hasAttribute("`+liveMarkerAttr+`")`)
		// A mark on the window: a reload or navigation would lose it.
		evalJS[chromedp.Void](t, ctx, `window.e2eNoReload = true`)

		liveRcpt = "live-victim-7f3a@trap.e2e.example"
		ids, err := send(env.d.addr, "bounce@spam.example", []string{liveRcpt}, spamHit(e2eOrigin, liveRcpt, "live row", "body for "+liveRcpt))
		if err != nil || len(ids) != 1 {
			t.Fatalf("SMTP send: %v %v", ids, err)
		}
		liveID = ids[0].String()
		row := `a[href="/reports/` + liveID + `"]`
		b.do(t, ctx, "waiting for the new report's row", chromedp.WaitVisible(chromedp.CSS(row)))
		if !evalJS[bool](t, ctx, `window.e2eNoReload === true`) {
			t.Error("the page reloaded to show the new report; it should have arrived live")
		}
		if !evalJS[bool](t, ctx, `!!document.querySelector('#report-rows tr[data-report-id="`+liveID+`"]')`) {
			t.Error("the new row is not in the live table body")
		}
		// The live row's time is shown in the viewer's zone like the rest.
		b.do(t, ctx, "waiting for the live row's local time", chromedp.WaitReady(chromedp.CSS(`tr[data-report-id="`+liveID+`"] time[datetime][data-local]`)))
		b.expectClean(t)
	})

	t.Run("evidence", func(t *testing.T) {
		if liveID == "" {
			t.Skip("no report from the live scenario")
		}
		ctx := b.scenario(t)
		b.openOK(t, ctx, env.base+"/reports/"+liveID)
		b.openOK(t, ctx, env.base+"/reports/"+liveID+"/evidence")
		marked := evalJS[[]string](t, ctx, `[...document.querySelectorAll(`+jsString(placeholderSel)+`)].map(e => e.textContent)`)
		found := false
		for _, m := range marked {
			if strings.Contains(m, placeholderText) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s element holds %q; highlighted: %q", placeholderSel, placeholderText, marked)
		}
		local, _, _ := strings.Cut(liveRcpt, "@")
		for _, what := range []string{`document.documentElement.outerHTML`, `document.title`, `location.href`} {
			if v := evalJS[string](t, ctx, what); strings.Contains(v, local) {
				t.Errorf("%s holds the redacted recipient %q", what, liveRcpt)
			}
		}
		b.screenshot(t, ctx, shots, "evidence-placeholder")
		b.expectClean(t)
	})

	t.Run("outbox retry", func(t *testing.T) {
		if liveID == "" {
			t.Skip("no report from the live scenario")
		}
		ctx := b.scenario(t)
		// The desk refuses with 550: the entry fails on its first try.
		entry := waitOutbox(t, ctx, env.base, liveID, store.OutboxFailed)
		env.desk.accept.Store(true)

		b.openOK(t, ctx, env.base+"/outbox?status=failed")
		retry := `form[action="/outbox/` + entry.ID.String() + `/retry"] button`
		b.do(t, ctx, "finding the retry button", chromedp.WaitVisible(chromedp.CSS(retry)))
		if code := b.submitNav(t, ctx, "clicking retry", chromedp.Click(chromedp.CSS(retry))); code != 200 {
			t.Fatalf("retry answered %d: %s", code, evalJS[string](t, ctx, `document.body.innerText.slice(0, 500)`))
		}
		if flash := evalJS[string](t, ctx, `(document.querySelector('[data-testid="flash"]') || {}).textContent || ""`); flash == "" {
			t.Error("after Retry now the page says nothing about it")
		}
		waitOutbox(t, ctx, env.base, liveID, store.OutboxSent)
		// The outbox page shows the new state.
		b.openOK(t, ctx, env.base+"/outbox?status=sent")
		row := `tr[data-outbox-id="` + entry.ID.String() + `"] [data-testid="outbox-status"]`
		b.do(t, ctx, "finding the sent entry", chromedp.WaitVisible(chromedp.CSS(row)))
		if st := evalJS[string](t, ctx, `document.querySelector(`+jsString(row)+`).textContent.trim()`); st != "sent" {
			t.Errorf("the outbox page shows the retried entry as %q, want sent", st)
		}
		if env.desk.accepted.Load() != 1 {
			t.Errorf("the desk accepted %d reports, want 1", env.desk.accepted.Load())
		}
		// The report page shows both deliveries (refused, then sent) and
		// the operator's requeue between them, each at its time.
		b.openOK(t, ctx, env.base+"/reports/"+liveID)
		b.do(t, ctx, "finding the attempts", chromedp.WaitVisible(chromedp.CSS(`[data-testid="outbox-history"]`)))
		rows := evalJS[[]string](t, ctx, `[...document.querySelectorAll('[data-testid="attempt-row"]')].map(r => [...r.cells].map(c => c.textContent.trim()).join(" | "))`)
		outcomes := evalJS[[]string](t, ctx, `[...document.querySelectorAll('[data-testid="attempt-outcome"]')].map(e => e.textContent.trim())`)
		if strings.Join(outcomes, ",") != "perm-failure,requeued,sent" || len(rows) != 3 ||
			!strings.Contains(rows[0], "550") || !strings.Contains(rows[2], "250") || !strings.Contains(rows[2], "127.0.0.1") {
			t.Errorf("attempt rows %q", rows)
		}
		if n := evalJS[int](t, ctx, `document.querySelectorAll('[data-testid="attempt-row"] time[datetime]').length`); n != 3 {
			t.Errorf("%d attempt rows carry a time element, want 3", n)
		}
		local, _, _ := strings.Cut(liveRcpt, "@")
		if v := evalJS[string](t, ctx, `document.querySelector('[data-testid="outbox-history"]').outerHTML`); strings.Contains(v, local) {
			t.Errorf("the attempts hold the redacted recipient %q", liveRcpt)
		}
		b.expectClean(t)
	})

	t.Run("quarantine", func(t *testing.T) {
		ctx := b.scenario(t)
		// Mail to the ARF channel that is no feedback report: nothing to
		// report, so it is kept in quarantine with the reason.
		var qids []string
		for _, subj := range []string{"not a report, to reprocess", "not a report, to delete"} {
			msg := []byte("From: someone@mailbox.example\r\nTo: fbl@e2e.example\r\nSubject: " + subj + "\r\nMessage-ID: <q" +
				fmt.Sprint(len(qids)) + "@mailbox.example>\r\n\r\nHello, this is not an ARF report.\r\n")
			ids, err := send(env.d.addr, "someone@mailbox.example", []string{"fbl@e2e.example"}, msg)
			if err != nil || len(ids) != 1 {
				t.Fatalf("SMTP send: %v %v", ids, err)
			}
			qids = append(qids, ids[0].String())
		}
		b.openOK(t, ctx, env.base+"/quarantine")
		row := func(id string) string { return `tr[data-testid="quarantine-row"][data-message-id="` + id + `"]` }
		for _, id := range qids {
			b.do(t, ctx, "finding the quarantined message", chromedp.WaitVisible(chromedp.CSS(row(id)+` [data-testid="quarantine-reason"]`)))
			if reason := evalJS[string](t, ctx, `document.querySelector(`+jsString(row(id)+` [data-testid="quarantine-reason"]`)+`).textContent.trim()`); reason == "" {
				t.Errorf("the quarantined message %s shows no reason", id)
			}
		}

		// Delete asks first (a confirm dialog, answered OK), then the
		// message is gone.
		del := row(qids[1]) + ` button[data-testid="delete"]`
		b.acceptDialogs.Store(true)
		code := b.submitNav(t, ctx, "clicking delete", chromedp.Click(chromedp.CSS(del)))
		b.acceptDialogs.Store(false)
		if code != 200 {
			t.Fatalf("delete answered %d", code)
		}
		b.do(t, ctx, "waiting for the message to go", chromedp.WaitNotPresent(chromedp.CSS(row(qids[1]))))
		if quarantined(t, env.base, qids[1]) {
			t.Error("the API still lists the deleted message")
		}
		confirms := b.expectOnly(t, func(p problem) bool { return p.kind == "dialog" && strings.HasPrefix(p.text, "confirm: ") })
		if len(confirms) != 1 {
			t.Errorf("delete asked %d times, want one confirmation", len(confirms))
		}

		// Reprocess: the message still yields no report (no parser changed
		// since), and the page says so; it stays in quarantine.
		reprocess := row(qids[0]) + ` button[data-testid="reprocess"]`
		if !evalJS[bool](t, ctx, `!!document.querySelector(`+jsString(reprocess)+`)`) {
			t.Fatalf("the quarantine offers no reprocess button: %s", evalJS[string](t, ctx, `document.querySelector(`+jsString(row(qids[0]))+`).innerText`))
		}
		if code := b.submitNav(t, ctx, "clicking reprocess", chromedp.Click(chromedp.CSS(reprocess))); code != 200 {
			t.Fatalf("reprocess answered %d: %s", code, evalJS[string](t, ctx, `document.body.innerText.slice(0, 500)`))
		}
		b.do(t, ctx, "waiting for the result", chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash"]`)))
		t.Logf("after reprocess: %q", evalJS[string](t, ctx, `document.querySelector('[data-testid="flash"]').textContent`))
		if !evalJS[bool](t, ctx, `!!document.querySelector(`+jsString(row(qids[0]))+`)`) {
			t.Error("the reprocessed message left the quarantine although it still yields no report")
		}
		if !quarantined(t, env.base, qids[0]) {
			t.Error("the API no longer lists the reprocessed message as quarantined")
		}
		b.expectClean(t)

		// A trap hit on a channel that wrongly trusts the network it came
		// from has no origin: quarantined. Once the operator fixes the
		// configuration (a reload), Reprocess makes it a report.
		rcpt := "relayed-victim@relayed.e2e.example"
		ids, err := send(env.d.addr, "bounce@spam.example", []string{rcpt}, spamHit(e2eOrigin, rcpt, "relayed", "relayed body"))
		if err != nil || len(ids) != 1 {
			t.Fatalf("SMTP send: %v %v", ids, err)
		}
		rid := ids[0].String()
		b.openOK(t, ctx, env.base+"/quarantine")
		reason := evalJS[string](t, ctx, `(document.querySelector(`+jsString(row(rid)+` [data-testid="quarantine-reason"]`)+`) || {}).textContent || ""`)
		if !strings.Contains(reason, "trusted relay") {
			t.Fatalf("the relayed trap hit is not quarantined for its trusted relay; reason %q", reason)
		}
		env.reload(t, func(y string) string {
			return strings.Replace(y, "\n    trusted_relays: [\"192.88.99.0/24\"]", "", 1)
		})
		b.openOK(t, ctx, env.base+"/quarantine")
		if code := b.submitNav(t, ctx, "clicking reprocess after the fix", chromedp.Click(chromedp.CSS(row(rid)+` button[data-testid="reprocess"]`))); code != 200 {
			t.Fatalf("reprocess answered %d", code)
		}
		if loc := evalJS[string](t, ctx, `location.pathname`); loc != "/reports/"+rid {
			t.Fatalf("after a successful reprocess the browser is on %s, want the report /reports/%s", loc, rid)
		}
		if src := evalJS[string](t, ctx, `(document.querySelector('[data-testid="report-source"]') || {}).textContent || ""`); !strings.Contains(src, e2eOrigin) {
			t.Errorf("the reprocessed report's source is %q, want %s", src, e2eOrigin)
		}
		if quarantined(t, env.base, rid) {
			t.Error("the API still lists the reprocessed message as quarantined")
		}
		if r := apiDo(t, "GET", env.base+"/api/v1/reports/"+rid, consoleOps, "", nil); r.code != 200 {
			t.Errorf("the API has no report %s after the reprocess: %d", rid, r.code)
		}
		b.expectClean(t)
	})

	t.Run("views", func(t *testing.T) {
		ctx := b.scenario(t)
		pages := append([]struct{ name, path string }{}, views...)
		if liveID != "" {
			pages = append(pages, struct{ name, path string }{"report", "/reports/" + liveID}, struct{ name, path string }{"evidence", "/reports/" + liveID + "/evidence"})
		}
		for _, size := range []struct {
			name          string
			width, height int64
			mobile        bool
		}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}} {
			opts := []chromedp.EmulateViewportOption{}
			if size.mobile {
				opts = append(opts, chromedp.EmulateMobile)
			}
			b.do(t, ctx, "setting the viewport", chromedp.EmulateViewport(size.width, size.height, opts...))
			for _, v := range pages {
				b.openOK(t, ctx, env.base+v.path)
				b.do(t, ctx, "waiting for "+v.path, chromedp.WaitVisible(chromedp.CSS("main")))
				if w := evalJS[int64](t, ctx, `document.documentElement.scrollWidth`); w > size.width {
					wide := evalJS[[]string](t, ctx, widest)
					t.Errorf("%s at %dx%d: the page is %d px wide, it scrolls sideways; widest elements: %q", v.path, size.width, size.height, w, wide)
				}
				path := b.screenshot(t, ctx, shots, v.name+"-"+size.name)
				if size.name == "desktop" && !strings.HasSuffix(v.name, "-off") {
					copyScreenshot(t, path)
				}
				for _, p := range b.takeProblems() {
					t.Errorf("browser on %s at %s: %s", v.path, size.name, p)
				}
			}
		}
		b.do(t, ctx, "resetting the viewport", chromedp.EmulateViewport(1280, 800))
	})

	t.Run("read-only token cannot act", func(t *testing.T) {
		ctx := b.scenario(t)
		b.openOK(t, ctx, env.base+"/outbox")
		if code := b.submitNav(t, ctx, "logging out", chromedp.Click(chromedp.CSS(logoutButton))); code != 200 {
			t.Fatalf("logout answered %d", code)
		}
		// The login page is a view too.
		b.do(t, ctx, "waiting for the login form", chromedp.WaitVisible(chromedp.CSS(tokenInput)))
		copyScreenshot(t, b.screenshot(t, ctx, shots, "login-desktop"))
		b.do(t, ctx, "narrowing the viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		b.screenshot(t, ctx, shots, "login-phone")
		b.do(t, ctx, "resetting the viewport", chromedp.EmulateViewport(1280, 800))
		if code := b.login(t, ctx, env.base, consoleViewer); code != 200 {
			t.Fatalf("logging in with the viewer's token answered %d", code)
		}
		b.openOK(t, ctx, env.base+"/outbox")
		enabled := evalJS[int](t, ctx, `[...document.querySelectorAll('form[action$="/retry"] button, form[action$="/cancel"] button')].filter(b => !b.disabled).length`)
		if enabled != 0 {
			t.Errorf("the viewer is offered %d enabled outbox actions", enabled)
		}
		// Whatever the page offers, the server refuses: a POST with the
		// page's own CSRF token, from the page, is 403.
		csrf := evalJS[string](t, ctx, `(document.querySelector('input[name="csrf"]') || {}).value || ""`)
		if csrf == "" {
			t.Fatal("the viewer's page carries no CSRF token (the logout form should)")
		}
		es := outboxEntries(t, env.base)
		if len(es) == 0 {
			t.Fatal("no outbox entry")
		}
		before := es[0]
		code := evalAwait[int](t, ctx, `fetch("/outbox/`+before.ID.String()+`/retry", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "csrf=" + encodeURIComponent(`+jsString(csrf)+`)}).then(r => r.status)`)
		if code != http.StatusForbidden {
			t.Errorf("a viewer's retry answered %d, want 403", code)
		}
		for _, e := range outboxEntries(t, env.base) {
			if e.ID == before.ID && (e.Status != before.Status || e.Attempts != before.Attempts) {
				t.Errorf("a viewer's retry changed the entry: %s/%d -> %s/%d", before.Status, before.Attempts, e.Status, e.Attempts)
			}
		}
		b.expectOnly(t, func(p problem) bool {
			return p.kind == "log.network" && strings.Contains(p.text, "403") && strings.HasSuffix(p.url, "/retry")
		})
	})

	t.Run("time zone", func(t *testing.T) {
		ctx := b.scenario(t)
		// A zone without daylight saving, half an hour off: a page that
		// showed UTC, or the machine's zone, cannot pass by chance.
		if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Kolkata"}); err != nil {
			t.Fatal(err)
		}
		defer chromedp.Call(b.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: ""})
		b.openOK(t, ctx, env.base+"/reports")
		sel := `#report-rows time[datetime]`
		b.do(t, ctx, "waiting for local times", chromedp.WaitReady(chromedp.CSS(sel+`[data-local]`)))
		tm := evalJS[map[string]string](t, ctx, `(() => { const e = document.querySelector(`+jsString(sel)+`); return {dt: e.getAttribute("datetime"), text: e.textContent, title: e.title}; })()`)
		at, err := time.Parse(time.RFC3339, tm["dt"])
		if err != nil {
			t.Fatalf("time element %v: %v", tm, err)
		}
		local := at.In(time.FixedZone("IST", 5*3600+1800))
		if want := local.Format("03:04:05 PM"); !strings.Contains(tm["text"], want) {
			t.Errorf("a time in Asia/Kolkata shows %q, want it to hold %s", tm["text"], want)
		}
		if want := at.UTC().Format("15:04:05") + " UTC"; !strings.Contains(tm["title"], want) {
			t.Errorf("a time's title (shown on hover) is %q, want UTC (%s)", tm["title"], want)
		}
		b.expectClean(t)
	})

	t.Run("keyboard", func(t *testing.T) {
		ctx := b.scenario(t)
		b.openOK(t, ctx, env.base+"/reports")
		b.do(t, ctx, "pressing Tab", chromedp.KeyEvent(kb.Tab))
		first := evalJS[map[string]string](t, ctx, `({tag: document.activeElement.tagName, href: document.activeElement.getAttribute("href") || "", text: document.activeElement.textContent.trim()})`)
		if first["tag"] != "A" || !strings.HasPrefix(first["href"], "#") || !strings.Contains(strings.ToLower(first["text"]), "skip") {
			t.Errorf("the first Tab reaches %v, want the skip link", first)
		}
		// Enter on the skip link moves the focus to the main content.
		b.do(t, ctx, "pressing Enter on the skip link", chromedp.KeyEvent(kb.Enter))
		if id := evalJS[string](t, ctx, `document.activeElement.id`); "#"+id != first["href"] {
			t.Errorf("after Enter on the skip link the focus is on #%s, want %s", id, first["href"])
		}
		// From the top again, through the navigation.
		b.openOK(t, ctx, env.base+"/reports")
		b.do(t, ctx, "pressing Tab", chromedp.KeyEvent(kb.Tab))
		navLinks := evalJS[[]string](t, ctx, `[...document.querySelectorAll("nav a[href]")].map(a => a.getAttribute("href"))`)
		want := map[string]bool{}
		for _, v := range views {
			want[v.path] = false
		}
		for _, h := range navLinks {
			if _, ok := want[h]; ok {
				want[h] = true
			}
		}
		for p, ok := range want {
			if !ok {
				t.Errorf("the navigation has no link to %s (links: %q)", p, navLinks)
			}
		}
		// Tab on until every view's link had the focus, in at most as many
		// steps as the navigation has links and a few more.
		reached := map[string]bool{}
		for i := 0; i < len(navLinks)+4 && len(reached) < len(views); i++ {
			b.do(t, ctx, "pressing Tab", chromedp.KeyEvent(kb.Tab))
			h := evalJS[string](t, ctx, `document.activeElement.closest("nav") ? document.activeElement.getAttribute("href") || "" : ""`)
			if _, ok := want[h]; ok {
				reached[h] = true
			}
		}
		if len(reached) < len(views) {
			t.Errorf("Tab reached %v of the navigation, want every view", reached)
		}
		b.expectClean(t)
	})
}

// widest lists the elements that reach furthest right, to tell what
// makes a page scroll sideways.
const widest = `[...document.querySelectorAll("body *")].map(e => [e, e.getBoundingClientRect().right]).
	filter(([e, r]) => r > document.documentElement.clientWidth).sort((a, b) => b[1] - a[1]).slice(0, 5).
	map(([e, r]) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string" ? "." + e.className.split(" ").join(".") : "") + " right=" + Math.round(r))`

// waitOutbox waits until the outbox entry of report id has status, and
// returns it (through the API: the browser checks what the page shows).
func waitOutbox(t *testing.T, ctx context.Context, base, report string, status store.OutboxStatus) store.OutboxEntry {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last store.OutboxEntry
	for {
		for _, e := range outboxEntries(t, base) {
			if e.ID.String() == report {
				last = e
			}
		}
		if last.Status == status {
			return last
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the outbox entry of %s is %q, not %s: %v", report, last.Status, status, ctx.Err())
		case <-tick.C:
		}
	}
}

func outboxEntries(t *testing.T, base string) []store.OutboxEntry {
	t.Helper()
	r := apiDo(t, "GET", base+"/api/v1/outbox", consoleOps, "", nil)
	if r.code != 200 {
		t.Fatalf("outbox: %d %s", r.code, r.body)
	}
	var p outboxPage
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p.Entries
}

// quarantined reports whether the API lists message id as quarantined.
func quarantined(t *testing.T, base, id string) bool {
	t.Helper()
	r := apiDo(t, "GET", base+"/api/v1/messages?status=quarantined&limit=1000", consoleOps, "", nil)
	if r.code != 200 {
		t.Fatalf("messages: %d %s", r.code, r.body)
	}
	var p struct{ Messages []struct{ ID string } }
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	for _, m := range p.Messages {
		if m.ID == id {
			return true
		}
	}
	return false
}

// maxDocScreenshot bounds a screenshot kept in the repository.
const maxDocScreenshot = 300 << 10

// copyScreenshot copies a desktop screenshot into $XARFD_SCREENSHOTS (a
// path relative to the repository's root, or absolute): XARFD_SCREENSHOTS=docs/ui
// regenerates the documentation's pictures. Each is re-encoded with the
// best compression and, if still over maxDocScreenshot, cut to its top.
func copyScreenshot(t *testing.T, path string) {
	t.Helper()
	dir := os.Getenv("XARFD_SCREENSHOTS")
	if dir == "" {
		return
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", dir) // tests run in e2e/
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	var buf bytes.Buffer
	for height := img.Bounds().Dy(); ; height = height * 3 / 4 {
		buf.Reset()
		cut := img
		if height < img.Bounds().Dy() {
			cut = img.(interface {
				SubImage(image.Rectangle) image.Image
			}).SubImage(image.Rect(0, 0, img.Bounds().Dx(), height))
		}
		if err := enc.Encode(&buf, cut); err != nil {
			t.Fatal(err)
		}
		if buf.Len() <= maxDocScreenshot || height < 800 {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserHostileEvidence delivers a message built to attack whoever
// looks at it, opens it in the console, and checks in the browser that
// nothing in it ran, loaded or navigated, and that the page still works.
func TestBrowserHostileEvidence(t *testing.T) {
	chromiumPath(t)
	env := startConsoleDaemon(t)
	bc := startBeacon(t)
	b := newBrowser(t)
	ctx := b.scenario(t)

	b.open(t, ctx, env.base+"/reports")
	if code := b.login(t, ctx, env.base, consoleOps); code != 200 {
		t.Fatalf("login: %d", code)
	}
	b.expectClean(t)
	rcpt := "hostile-victim-91c2@trap.e2e.example"
	msg := hostileMessage(e2eOrigin, rcpt, bc.url)
	ids, err := send(env.d.addr, "bounce@spam.example", []string{rcpt}, msg)
	if err != nil || len(ids) != 1 {
		t.Fatalf("SMTP send of the hostile message (%d bytes): %v %v", len(msg), ids, err)
	}
	id := ids[0].String()

	local, _, _ := strings.Cut(rcpt, "@")
	// untouched checks the top document: no script of the message ran
	// there, it did not navigate, and it does not hold the recipient that
	// redaction removed.
	untouched := func(ctx context.Context, where, path string) {
		t.Helper()
		if html := evalJS[string](t, ctx, `document.documentElement.outerHTML`); strings.Contains(html, local) {
			t.Errorf("%s: the page shows the redacted recipient %s", where, rcpt)
		}
		st := evalJS[map[string]any](t, ctx, `({title: document.title, pwned: typeof window.pwned === "undefined" ? "" : String(window.pwned),
			marked: document.documentElement.getAttribute("data-pwned") || "", path: location.pathname, origin: location.origin})`)
		if st["title"] == hostileTitle || st["pwned"] != "" || st["marked"] != "" {
			t.Errorf("%s: the message's script ran in the console: %v", where, st)
		}
		if st["path"] != path || st["origin"] != env.base {
			t.Errorf("%s: the page navigated to %v%v, want %s%s", where, st["origin"], st["path"], env.base, path)
		}
	}

	for _, path := range []string{"/reports", "/reports/" + id} {
		b.openOK(t, ctx, env.base+path)
		b.do(t, ctx, "waiting for "+path, chromedp.WaitVisible(chromedp.CSS(`a[href="/reports/`+id+`/evidence"], a[href="/reports/`+id+`"]`)))
		untouched(ctx, path, path)
		b.expectClean(t)
	}

	evidence := "/reports/" + id + "/evidence"
	b.openOK(t, ctx, env.base+evidence)
	b.do(t, ctx, "waiting for the evidence", chromedp.WaitVisible(chromedp.CSS(`[data-testid="evidence-header"]`)))
	untouched(ctx, "evidence", evidence)
	if !evalJS[bool](t, ctx, `document.querySelector('[data-testid="evidence-header"]').textContent.includes("hostile evidence")`) {
		t.Error("the evidence page does not show the message's header (its subject is missing)")
	}
	if w := evalJS[int64](t, ctx, `document.documentElement.scrollWidth`); w > 1280 {
		t.Errorf("the 60 KB header makes the evidence page %d px wide at 1280: it scrolls sideways", w)
	}

	b.expectClean(t)
	// The HTML part: as source, then rendered in the sandbox.
	part := evalJS[string](t, ctx, `([...document.querySelectorAll('a[data-testid="part-link"]')].find(a => a.textContent.includes("text/html")) || {}).href || ""`)
	if part == "" {
		t.Fatalf("the evidence page lists no text/html part: %s", evalJS[string](t, ctx, `document.querySelector("main").innerText.slice(0, 800)`))
	}
	b.openOK(t, ctx, part)
	b.do(t, ctx, "waiting for the HTML source", chromedp.WaitVisible(chromedp.CSS(`[data-testid="evidence-part"]`)))
	if src := evalJS[string](t, ctx, `document.querySelector('[data-testid="evidence-part"]').textContent`); !strings.Contains(src, "<script>") {
		t.Errorf("the HTML part's source is not shown as text: %.300q", src)
	}
	untouched(ctx, "HTML part as source", evidence)
	b.expectClean(t)
	b.do(t, ctx, "showing the HTML part rendered", chromedp.Click(chromedp.CSS(`a[data-testid="show-rendered"]`)),
		chromedp.WaitVisible(chromedp.CSS(`iframe[data-testid="evidence-frame"]`)))
	untouched(ctx, "HTML part rendered", evidence)

	// The HTML part is shown as text or in a sandboxed frame; none of its
	// elements may be live in the console's own document.
	for _, sel := range []string{"#hostile-heading", "#hostile-js-link", "#hostile-form", "a[href^='javascript:']", "meta[http-equiv]", "base", "form:not([action^='/'])"} {
		if evalJS[bool](t, ctx, `!!document.querySelector(`+jsString(sel)+`)`) {
			t.Errorf("the console's document holds the message's element %s", sel)
		}
	}
	// Every frame is sandboxed with nothing allowed that would let its
	// content run or leave.
	sandboxes := evalJS[[]map[string]any](t, ctx, `[...document.querySelectorAll("iframe")].map(f => ({src: f.getAttribute("src") || "", srcdoc: f.hasAttribute("srcdoc"), sandbox: f.hasAttribute("sandbox") ? f.getAttribute("sandbox") : null}))`)
	for _, f := range sandboxes {
		sb, ok := f["sandbox"].(string)
		if !ok {
			t.Errorf("a frame without sandbox: %v", f)
			continue
		}
		for _, bad := range []string{"allow-scripts", "allow-same-origin", "allow-top-navigation", "allow-forms", "allow-popups", "allow-modals"} {
			if strings.Contains(sb, bad) {
				t.Errorf("the frame %v allows %s", f, bad)
			}
		}
	}
	// Inside each frame (attached through DevTools: Chromium runs
	// sandboxed frames in a process of their own) nothing ran either.
	frames := b.attachFrames(t, ctx, len(sandboxes))
	t.Logf("evidence page: %d frame(s) %v, %d attached", len(sandboxes), sandboxes, len(frames))
	copyScreenshot(t, b.screenshot(t, ctx, artifactsDir(t), "evidence-hostile-html-desktop"))
	for url, fctx := range frames {
		st := evalJS[map[string]any](t, fctx, `({title: document.title, marked: document.documentElement.getAttribute("data-pwned") || "", href: location.href, html: document.documentElement.outerHTML})`)
		if html, _ := st["html"].(string); strings.Contains(html, local) {
			t.Errorf("the frame %s shows the redacted recipient %s", url, rcpt)
		} else if !strings.Contains(html, "hostile-heading") {
			t.Errorf("the frame %s does not hold the message's HTML part: %.300q", url, html)
		}
		delete(st, "html")
		if st["title"] == hostileTitle || st["marked"] != "" {
			t.Errorf("the message's script ran in the frame %s: %v", url, st)
		}
		if strings.HasPrefix(st["href"].(string), bc.url) {
			t.Errorf("the frame navigated to %v", st["href"])
		}
		// Click the javascript: link where the frame shows it.
		rect := evalJS[map[string]float64](t, fctx, `(() => { const a = document.getElementById("hostile-js-link"); if (!a) return {}; const r = a.getBoundingClientRect(); return {x: r.x + r.width/2, y: r.y + r.height/2}; })()`)
		if len(rect) == 2 {
			fr := evalJS[map[string]float64](t, ctx, `(() => { const r = document.querySelector("iframe").getBoundingClientRect(); return {x: r.x, y: r.y}; })()`)
			b.do(t, ctx, "clicking the javascript: link", chromedp.MouseClickXY(fr["x"]+rect["x"], fr["y"]+rect["y"]))
			t.Logf("clicked the javascript: link in the frame at %v+%v", fr, rect)
			st := evalJS[map[string]any](t, fctx, `({title: document.title, marked: document.documentElement.getAttribute("data-pwned") || ""})`)
			if st["title"] == hostileTitle || st["marked"] != "" {
				t.Errorf("the javascript: link ran in the frame %s: %v", url, st)
			}
		}
	}
	untouched(ctx, "evidence after clicking", evidence)

	// What the content provoked inside a sandboxed frame is the sandbox
	// and the frame's CSP doing their work; anything in the console's own
	// document is a failure.
	provoked := b.expectOnly(t, func(p problem) bool {
		inFrame := p.frame != "" || strings.Contains(p.url, "/evidence/part/") || strings.Contains(p.text, "/evidence/part/") || p.url == "about:srcdoc"
		blocked := p.kind == "csp" || p.kind == "log.security" || strings.Contains(p.text, "sandboxed")
		return inFrame && blocked
	})
	for _, p := range provoked {
		t.Logf("blocked inside the frame (expected): %s", p)
	}

	// The page stays usable: its navigation leads on, and the report is
	// listed.
	b.do(t, ctx, "following the navigation to the reports", chromedp.Click(chromedp.CSS(`nav a[href="/reports"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/reports/`+id+`"]`)))
	untouched(ctx, "reports after the evidence", "/reports")
	b.expectClean(t)

	if hits := bc.got(); len(hits) != 0 {
		t.Errorf("the hostile message reached out from the console: %q", hits)
	}
}
