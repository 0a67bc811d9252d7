package e2e

// The browser harness: a real headless Chromium (Debian's package),
// driven over the DevTools protocol with chromedp, that records every
// uncaught exception, console error, log error, JavaScript dialog and
// Content-Security-Policy violation of the pages it opens.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/audits"
	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/internal/syncbuf"
)

// scenarioTimeout bounds one scenario (a subtest) of a browser test. It is
// generous: two shared cores, a race-built daemon and a browser.
const scenarioTimeout = 60 * time.Second

// chromiumPath returns the browser to drive: $XARFD_CHROMIUM or Debian's
// /usr/bin/chromium. Without one the test skips, unless
// XARFD_BROWSER_TESTS=required (scripts/test sets it, so CI fails rather
// than skips).
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("XARFD_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		msg := fmt.Sprintf("no Chromium at %s (install Debian's chromium package or set XARFD_CHROMIUM)", path)
		if os.Getenv("XARFD_BROWSER_TESTS") == "required" {
			t.Fatalf("%s, and XARFD_BROWSER_TESTS=required", msg)
		}
		t.Skipf("skipping the browser test: %s; set XARFD_BROWSER_TESTS=required to fail instead", msg)
	}
	return path
}

// problem is something a page did that a console must never do: an
// uncaught exception, a console or log error, a dialog, a CSP violation.
type problem struct {
	kind  string // exception, console.error, log.<source>, csp, dialog
	page  string // the top document's URL when it happened
	frame string // the frame's URL when it happened in an iframe attached with attachFrames
	url   string // where it came from (script, resource or frame URL), when known
	text  string
}

func (p problem) String() string {
	s := fmt.Sprintf("[%s] on %s: %s", p.kind, p.page, p.text)
	if p.frame != "" {
		s = fmt.Sprintf("[%s] in the frame %s of %s: %s", p.kind, p.frame, p.page, p.text)
	}
	if p.url != "" && p.url != p.page && p.url != p.frame {
		s += " (at " + p.url + ")"
	}
	return s
}

// browser is one headless Chromium with one tab.
type browser struct {
	t    *testing.T
	ctx  context.Context // the tab's
	logs *syncbuf.Buffer // Chromium's own stderr

	mu       sync.Mutex
	page     string // URL of the top frame
	problems []problem
	checked  int               // problems[:checked] were reported by a check already
	frames   []context.Context // iframes attached by attachFrames
	// acceptDialogs answers dialogs with OK (a confirmation the test
	// expects); otherwise they are dismissed. Either way they are
	// problems unless the scenario allows them.
	acceptDialogs atomic.Bool
}

// newBrowser starts Chromium for t and closes it when t ends; problems no
// check has seen yet fail t then.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	b := &browser{t: t, logs: &syncbuf.Buffer{}}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Without these Chromium reaches out to Google's services at
		// start; this machine's network refuses them, and CI must not
		// depend on them anyway.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
		chromedp.Env("TZ=UTC"),
		chromedp.CombinedOutput(b.logs),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listener("")))
	b.ctx = ctx
	t.Cleanup(func() {
		b.flush()
		cancelTab()
		cancelAlloc()
		b.mu.Lock()
		rest := b.problems[b.checked:]
		b.checked = len(b.problems)
		b.mu.Unlock()
		for _, p := range rest {
			t.Errorf("browser: %s", p)
		}
		if t.Failed() {
			t.Logf("chromium output (last lines):\n%s", tail(b.logs.String(), 30))
		}
	})
	// The first action starts the browser and attaches the tab (Log,
	// Runtime and Page are enabled then); Audits reports CSP issues. It
	// runs on the tab's own context: the browser lives as long as the
	// context of the first action, so a shorter one would close it.
	if _, err := chromedp.Call(ctx, audits.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("starting %s: %v\n%s", exe, err, tail(b.logs.String(), 30))
	}
	return b
}

// listener returns the function that sees the events of the tab (frame
// "") or of an iframe attached with attachFrames. It runs in the target's
// event loop: it must return fast and send no command.
func (b *browser) listener(frame string) func(ev any) {
	return func(ev any) { b.listen(frame, ev) }
}

func (b *browser) listen(frame string, ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	add := func(kind, url, text string) {
		b.problems = append(b.problems, problem{kind: kind, page: b.page, frame: frame, url: url, text: text})
	}
	switch ev := ev.(type) {
	case *page.EventFrameNavigated:
		if frame == "" && ev.Frame != nil && ev.Frame.ParentID == "" {
			b.page = ev.Frame.URL
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		add("exception", d.URL, text)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				if a.Description != "" {
					parts = append(parts, a.Description)
				} else {
					parts = append(parts, string(a.Value))
				}
			}
			add("console."+string(ev.Type), "", strings.Join(parts, " "))
		}
	case *cdplog.EventEntryAdded:
		if e := ev.Entry; e != nil && e.Level == cdplog.EntryLevelError {
			add("log."+string(e.Source), e.URL, e.Text)
		}
	case *audits.EventIssueAdded:
		if is := ev.Issue; is != nil && is.Code == audits.InspectorIssueCodeContentSecurityPolicyIssue {
			d := is.Details.ContentSecurityPolicyIssueDetails
			url, text := "", "CSP issue"
			if d != nil {
				text = fmt.Sprintf("%s violates %q", d.ContentSecurityPolicyViolationType, d.ViolatedDirective)
				if d.BlockedURL != "" {
					text += " blocking " + d.BlockedURL
				}
				if d.SourceCodeLocation != nil {
					url = d.SourceCodeLocation.URL
				}
			}
			add("csp", url, text)
		}
	case *page.EventJavascriptDialogOpening:
		// A dialog blocks the page until it is answered; answer it from
		// outside the event loop, and count it: no console page opens one.
		add("dialog", ev.URL, string(ev.Type)+": "+ev.Message)
		go chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: b.acceptDialogs.Load()})
	}
}

// attachFrames attaches to every iframe of the tab that runs in a
// process of its own (Chromium isolates sandboxed frames): their console,
// log and CSP issues are not the tab's. Enabling the domains replays what
// the frame logged before. It returns a context per frame URL, for
// evaluating inside the frame; they end with ctx.
// It waits until want frames have a document of their own and have
// loaded it.
func (b *browser) attachFrames(t *testing.T, ctx context.Context, want int) map[string]context.Context {
	t.Helper()
	var iframes []*target.Info
	waitFor(t, ctx, fmt.Sprintf("%d frame(s) to load", want), func() bool {
		targets, err := chromedp.Targets(ctx)
		if err != nil {
			t.Fatalf("browser: listing targets: %v", err)
		}
		iframes = iframes[:0]
		for _, ti := range targets {
			if ti.Type == "iframe" && ti.URL != "" && ti.URL != "about:blank" {
				iframes = append(iframes, ti)
			}
		}
		return len(iframes) >= want
	})
	frames := map[string]context.Context{}
	for _, ti := range iframes {
		// The frame's context derives from the tab's (so it shares the
		// browser); it is cancelled with the scenario.
		fctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(ti.TargetID), chromedp.WithDetachOnCancel(),
			chromedp.WithListener(b.listener(ti.URL)))
		context.AfterFunc(ctx, cancel)
		b.mu.Lock()
		b.frames = append(b.frames, fctx)
		b.mu.Unlock()
		if _, err := chromedp.Call(fctx, audits.Enable, cdp.Empty{}); err != nil {
			t.Fatalf("browser: attaching to the frame %s: %v", ti.URL, err)
		}
		waitJS(t, fctx, "the frame "+ti.URL+" to load", `document.readyState === "complete"`)
		frames[ti.URL] = fctx
	}
	return frames
}

// flush makes sure every event Chromium sent so far went through listen:
// the tab handles messages in order, and a reply comes after the events
// sent before it.
func (b *browser) flush() {
	b.mu.Lock()
	targets := append([]context.Context{b.ctx}, b.frames...)
	b.mu.Unlock()
	for _, tctx := range targets {
		if tctx.Err() != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(tctx, 10*time.Second)
		chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`0`))
		cancel()
	}
}

// takeProblems returns the problems no check has seen yet.
func (b *browser) takeProblems() []problem {
	b.flush()
	b.mu.Lock()
	defer b.mu.Unlock()
	rest := append([]problem(nil), b.problems[b.checked:]...)
	b.checked = len(b.problems)
	return rest
}

// expectClean fails t for every problem since the last check.
func (b *browser) expectClean(t *testing.T) {
	t.Helper()
	for _, p := range b.takeProblems() {
		t.Errorf("browser: %s", p)
	}
}

// scenario is a context for one scenario's actions, bounded by
// scenarioTimeout.
func (b *browser) scenario(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(b.ctx, scenarioTimeout)
	t.Cleanup(cancel)
	return ctx
}

// do runs actions and fails t with what was being done.
func (b *browser) do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the top document through the
// DevTools protocol (not the page's own eval: the console's CSP forbids
// that, and chromedp.Poll uses new Function).
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: evaluating %s: %v", expr, err)
	}
	return v
}

// evalAwait is evalJS for an expression that yields a promise: its
// settled value.
func evalAwait[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browser: evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is true in the top document, checking on every
// tick until ctx ends: a wait for a condition, not a sleep. Evaluation
// errors while the page changes (a navigation) are retried.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+expr+")"))
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			t.Fatalf("browser: waiting for %s (%s): %v", what, expr, last)
		case <-tick.C:
		}
	}
}

// waitFor waits until cond (Go side) holds, checking on every tick until
// ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("browser: waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// screenshot saves a full-page PNG of the current page as name.png into
// dir.
func (b *browser) screenshot(t *testing.T, ctx context.Context, dir, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// artifactsDir is $XARFD_ARTIFACTS, or artifacts/ui in the test's
// temporary directory; it is logged so a failed CI run can keep it.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("XARFD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "artifacts", "ui")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", dir)
	return dir
}

// Tokens of the console's daemon: an operator who may act, a viewer who
// may only read.
const (
	consoleOps    = "e2e-console-ops-token"
	consoleViewer = "e2e-console-viewer-token"
)

// consoleConfig: an ARF channel and two trap channels, all redacting
// recipients; the second trusts the relays that the test's origins sit in
// (a mistake the quarantine scenario fixes by a reload); a reporter that
// sends to the desk at %q; both tokens.
const consoleConfig = `
hostname: mx.e2e.example
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@e2e.example"]
    redact: {recipients: true}
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
    redact: {recipients: true}
  - name: relayed
    kind: trap
    addresses: ["*@relayed.e2e.example"]
    redact: {recipients: true}
    trusted_relays: ["192.88.99.0/24"]
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1s, give_up_after: 1h}
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@desk.e2e.example}]
http:
  listen: "127.0.0.1:0"
  tokens:
    - {name: ops, sha256: %q, scopes: [read, submit]}
    - {name: viewer, sha256: %q, scopes: [read]}
`

// consoleEnv is a real daemon for the console, with its abuse desk.
type consoleEnv struct {
	d    *daemon
	base string // http://127.0.0.1:port
	desk *switchDesk
	dir  string
	yaml string // the configuration in force, before writeConfig's additions
}

func startConsoleDaemon(t *testing.T) *consoleEnv {
	t.Helper()
	desk := startSwitchDesk(t)
	env := &consoleEnv{desk: desk, dir: t.TempDir(), yaml: fmt.Sprintf(consoleConfig, desk.addr, hashHex(consoleOps), hashHex(consoleViewer))}
	cfg := writeConfig(t, env.dir, env.yaml)
	env.d = startDaemon(t, env.dir, "-config", cfg)
	env.base = httpAddr(t, env.d)
	waitLog(t, env.d, "xarfd started", 0)
	return env
}

// reload rewrites the configuration with edit applied and reloads it
// (SIGHUP), waiting until the daemon says it did.
func (env *consoleEnv) reload(t *testing.T, edit func(string) string) {
	t.Helper()
	next := edit(env.yaml)
	if next == env.yaml {
		t.Fatal("reload: the edit changes nothing")
	}
	env.yaml = next
	writeConfig(t, env.dir, env.yaml)
	n := strings.Count(env.d.logs.String(), `"configuration reloaded"`)
	env.d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, env.d, "configuration reloaded", n)
}

// switchDesk is the abuse desk behind the reporter's smarthost (go-smtp
// on 127.0.0.1): it refuses every report with 550 until accept is set, so
// a test can make an outbox entry fail and then succeed on a retry.
type switchDesk struct {
	addr     string
	accept   atomic.Bool
	refused  atomic.Int64
	accepted atomic.Int64
}

func startSwitchDesk(t *testing.T) *switchDesk {
	t.Helper()
	d := &switchDesk{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(d)
	srv.Domain = "desk.e2e.example"
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	d.addr = l.Addr().String()
	return d
}

func (d *switchDesk) NewSession(*smtp.Conn) (smtp.Session, error) { return switchSession{d}, nil }

type switchSession struct{ d *switchDesk }

func (switchSession) Reset()                               {}
func (switchSession) Logout() error                        { return nil }
func (switchSession) Mail(string, *smtp.MailOptions) error { return nil }
func (switchSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s switchSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	if s.d.accept.Load() {
		s.d.accepted.Add(1)
		return nil
	}
	s.d.refused.Add(1)
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "not now"}
}

// beacon is an HTTP server on 127.0.0.1 that hostile content points at:
// any request it gets means the console let that content act (run a
// script, follow a refresh, load a remote image, submit a form).
type beacon struct {
	url  string
	mu   sync.Mutex
	hits []string
}

func startBeacon(t *testing.T) *beacon {
	t.Helper()
	b := &beacon{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits = append(b.hits, r.Method+" "+r.URL.Path)
		b.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

func (b *beacon) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.hits...)
}

// hostileTitle is what the hostile message's scripts would set the
// document's title to.
const hostileTitle = "pwned-by-evidence"

// hostileMessage is a trap hit from origin to rcpt whose HTML part tries
// everything a message can try on a page that shows it: scripts, event
// handlers, javascript: links, a meta refresh, a form, remote images,
// styles and frames, all pointing at beacon; its subject carries markup
// and one header field is 60 KB on one line.
func hostileMessage(origin, rcpt, beacon string) []byte {
	act := func(tag string) string {
		return "document.title='" + hostileTitle + "';window.pwned='" + tag + "';" +
			"document.documentElement.setAttribute('data-pwned','" + tag + "');" +
			"fetch('" + beacon + "/" + tag + "');"
	}
	html := `<!doctype html><html><head>
<meta http-equiv="refresh" content="0;url=` + beacon + `/meta-refresh">
<base href="` + beacon + `/base/">
<script>` + act("script") + `</script>
<script src="` + beacon + `/script-src.js"></script>
<link rel="stylesheet" href="` + beacon + `/style.css">
<style>body{background:url(` + beacon + `/css-bg)}</style>
</head><body onload="` + act("body-onload") + `">
<h1 id="hostile-heading">Hostile</h1>
<img src="nonexistent.png" onerror="` + act("img-onerror") + `">
<img src="` + beacon + `/tracking-pixel.gif">
<a id="hostile-js-link" href="javascript:` + act("js-link") + `">click me</a>
<a href="` + beacon + `/plain-link" target="_top">plain link</a>
<svg onload="` + act("svg-onload") + `"><circle r="4"/></svg>
<iframe src="` + beacon + `/iframe"></iframe>
<object data="` + beacon + `/object"></object>
<form id="hostile-form" action="` + beacon + `/form" method="post"><input name="q" value="1" autofocus onfocus="` + act("autofocus") + `"><button>send</button></form>
<p>addressed to ` + rcpt + `</p>
</body></html>`
	var b strings.Builder
	b.WriteString("Received: from spam.example (spam.example [" + origin + "]) by mx.e2e.example with ESMTP id h1; Fri, 27 Nov 2026 10:00:00 +0000\r\n")
	b.WriteString("From: \"<script>" + act("from") + "</script>\" <spammer@spam.example>\r\n")
	b.WriteString("To: " + rcpt + "\r\n")
	b.WriteString("Subject: <img src=x onerror=\"" + act("subject") + "\"> hostile evidence\r\n")
	b.WriteString("Message-ID: <hostile." + fmt.Sprint(time.Now().UnixNano()) + "@spam.example>\r\n")
	b.WriteString("X-Huge: " + strings.Repeat("A", 60<<10-len("X-Huge: ")-100) + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"hostile-b\"\r\n\r\n")
	b.WriteString("--hostile-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHostile plain part for " + rcpt + "\r\n")
	b.WriteString("--hostile-b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + strings.ReplaceAll(html, "\n", "\r\n") + "\r\n")
	b.WriteString("--hostile-b--\r\n")
	return []byte(b.String())
}

// expectOnly fails t for every problem since the last check that allowed
// does not accept, and returns the ones it accepted.
func (b *browser) expectOnly(t *testing.T, allowed func(problem) bool) []problem {
	t.Helper()
	var ok []problem
	for _, p := range b.takeProblems() {
		if allowed(p) {
			ok = append(ok, p)
			continue
		}
		t.Errorf("browser: %s", p)
	}
	return ok
}

// open navigates to url and returns the HTTP status of the document.
func (b *browser) open(t *testing.T, ctx context.Context, url string) int64 {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("browser: opening %s: %v", url, err)
	}
	if resp == nil {
		t.Fatalf("browser: opening %s: no response", url)
	}
	return resp.Status
}

// openOK opens url and fails t unless it answered 200.
func (b *browser) openOK(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if code := b.open(t, ctx, url); code != 200 {
		t.Fatalf("browser: %s answered %d, want 200; page: %s", url, code, evalJS[string](t, ctx, `document.body ? document.body.innerText.slice(0, 500) : ""`))
	}
}

// submitNav runs an action that submits a form and returns the status of
// the document it leads to.
func (b *browser) submitNav(t *testing.T, ctx context.Context, what string, action chromedp.Action[chromedp.Void]) int64 {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, action)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	if resp == nil {
		t.Fatalf("browser: %s: no navigation", what)
	}
	return resp.Status
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
