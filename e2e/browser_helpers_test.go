package e2e

// The browser harness: a real headless Chromium (Debian's package),
// driven over the DevTools protocol with chromedp, that records every
// uncaught exception, console error, log error, JavaScript dialog and
// Content-Security-Policy violation of the pages it opens.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/audits"
	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

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
	kind string // exception, console.error, log.<source>, csp, dialog
	page string // the top document's URL when it happened
	url  string // where it came from (script, resource or frame URL), when known
	text string
}

func (p problem) String() string {
	s := fmt.Sprintf("[%s] on %s: %s", p.kind, p.page, p.text)
	if p.url != "" && p.url != p.page {
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
	checked  int // problems[:checked] were reported by a check already
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
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithListener(b.listen))
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

// listen runs in the tab's event loop: it must return fast and send no
// command.
func (b *browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	add := func(kind, url, text string) {
		b.problems = append(b.problems, problem{kind: kind, page: b.page, url: url, text: text})
	}
	switch ev := ev.(type) {
	case *page.EventFrameNavigated:
		if ev.Frame != nil && ev.Frame.ParentID == "" {
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
		go chromedp.Call(b.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
	}
}

// flush makes sure every event Chromium sent so far went through listen:
// the tab handles messages in order, and a reply comes after the events
// sent before it.
func (b *browser) flush() {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`0`))
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
