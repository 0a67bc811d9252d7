package e2e

// The console's Indicators and Cases views as an operator uses them, on a
// daemon configured with intel (DNS blocklists) and own networks
// (subscriber cases, notifications to a real SMTP server, restrict calls
// to a real webhook on 127.0.0.1).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/internal/leakcheck"
	"github.com/xarfd/xarfd/store"
)

// opsConfig: one trap channel whose reports feed intel and own-network
// cases; notifications through the smarthost at %q; a restrict webhook
// at %q signed with the key in %q, called only when the operator asks
// (the thresholds are out of reach of one trap hit); the console's
// tokens.
const opsConfig = `
hostname: mx.e2e.example
sender: {org: E2E Net, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
    redact: {recipients: true}
    uses: [intel, own, store]
reporter:
  smarthost: {address: %q, tls: none}
intel:
  dns: {listen: ["127.0.0.1:0"]}
  ip_zone: bl.e2e.example
  domain_zone: dbl.e2e.example
own_networks: ["192.88.99.128/25"]
subscribers:
  static_file: %s
  notify: {enabled: true, from: abuse@e2e.example}
  restrict:
    enabled: true
    after: {reports: 100, trap_hits: 100, window: 24h}
    webhook: {url: %q, secret_file: %s, timeout: 5s}
http:
  listen: "127.0.0.1:0"
  tokens:
    - {name: ops, sha256: %q, scopes: [read, submit]}
`

// The trap hit of the scenario: from a subscriber's address in our own
// networks, advertising a shop whose domain intel lists.
const (
	opsShop     = "pill-shop.biz"
	opsTrapRcpt = "ops-victim-5d1e@trap.e2e.example"
)

func opsTrapHit() []byte {
	now := time.Now().UTC().Format(time.RFC1123Z)
	return []byte("Received: from infected.home (infected.home [" + ownStatic + "]) by mx.e2e.example with ESMTP id o1; " + now + "\r\n" +
		"From: Pharmacy <offers@" + opsShop + ">\r\nTo: " + opsTrapRcpt + "\r\nSubject: cheap pills\r\nDate: " + now + "\r\n" +
		"Message-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@" + opsShop + ">\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Buy now: https://" + opsShop + "/buy?u=" + opsTrapRcpt + "\r\n")
}

// restrictEndpoint is the operator's provisioning system: it checks each
// call's signature and answers 200.
type restrictEndpoint struct {
	*httptest.Server
	mu    sync.Mutex
	calls []cases.WebhookBody
	bad   []error
}

func startRestrictEndpoint(t *testing.T, secret []byte) *restrictEndpoint {
	t.Helper()
	e := &restrictEndpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b cases.WebhookBody
		err := cases.Verify(secret, r.Header.Get(cases.HeaderTimestamp), r.Header.Get(cases.HeaderSignature), body, time.Now(), 5*time.Minute)
		if err == nil {
			err = json.Unmarshal(body, &b)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if err != nil {
			e.bad = append(e.bad, err)
			http.Error(w, "bad call", http.StatusUnauthorized)
			return
		}
		e.calls = append(e.calls, b)
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(e.Close)
	return e
}

// byAction counts the calls of each action.
func (e *restrictEndpoint) byAction() (map[string][]cases.WebhookBody, []error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string][]cases.WebhookBody{}
	for _, c := range e.calls {
		out[c.Action] = append(out[c.Action], c)
	}
	return out, append([]error(nil), e.bad...)
}

// getCase reads one case through the API.
func getCase(t *testing.T, base string, id store.ID) store.Case {
	t.Helper()
	r := apiDo(t, "GET", base+"/api/v1/cases/"+id.String(), consoleOps, "", nil)
	if r.code != 200 {
		t.Fatalf("GET case %s: %d %s", id, r.code, r.body)
	}
	var c store.Case
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCase waits until the case, as the API shows it, satisfies cond.
func waitCase(t *testing.T, ctx context.Context, base string, id store.ID, what string, cond func(store.Case) bool) store.Case {
	t.Helper()
	var c store.Case
	waitFor(t, ctx, what, func() bool {
		c = getCase(t, base, id)
		return cond(c)
	})
	return c
}

// shoot opens path at 1280×800 and 390×844, checks that the page does
// not scroll sideways, and saves name-desktop.png and name-phone.png
// (the desktop one also into $XARFD_SCREENSHOTS).
func (b *browser) shoot(t *testing.T, ctx context.Context, base, path, dir, name string) {
	t.Helper()
	for _, size := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}} {
		var opts []chromedp.EmulateViewportOption
		if size.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		b.do(t, ctx, "setting the viewport", chromedp.EmulateViewport(size.width, size.height, opts...))
		b.openOK(t, ctx, base+path)
		b.do(t, ctx, "waiting for "+path, chromedp.WaitVisible(chromedp.CSS("main")))
		if w := evalJS[int64](t, ctx, `document.documentElement.scrollWidth`); w > size.width {
			t.Errorf("%s at %dx%d: the page is %d px wide, it scrolls sideways; widest elements: %q", path, size.width, size.height, w, evalJS[[]string](t, ctx, widest))
		}
		shot := b.screenshot(t, ctx, dir, name+"-"+size.name)
		if size.name == "desktop" {
			copyScreenshot(t, shot)
		}
	}
	b.do(t, ctx, "resetting the viewport", chromedp.EmulateViewport(1280, 800))
}

// text is the trimmed text of the first element sel selects, or "".
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return evalJS[string](t, ctx, `((document.querySelector(`+jsString(sel)+`) || {}).textContent || "").trim()`)
}

// TestBrowserIntelAndCases drives the Indicators and Cases views of a
// daemon that uses intel and own networks: a trap hit from a subscriber's
// address lists the domain it advertises and opens a case; in the
// browser the operator looks the domain up and delists it (the API and
// the DNS zone agree), then notifies, restricts and resolves the case,
// each with a reason that its history shows; the notification reached
// the SMTP server and the restrict call the webhook, once.
func TestBrowserIntelAndCases(t *testing.T) {
	chromiumPath(t)
	mp := startMailpit(t)
	secret := []byte("e2e-ops-webhook-secret-0123456789")
	hook := startRestrictEndpoint(t, secret)
	dir := t.TempDir()
	static := filepath.Join(dir, "subscribers.csv")
	if err := os.WriteFile(static, []byte("network,subscriber_id,email,name\n"+ownStatic+"/32,carol,carol@home.e2e.example,Carol\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(key, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir, fmt.Sprintf(opsConfig, mp.smtp, static, hook.URL, key, hashHex(consoleOps)))
	d := startDaemon(t, dir, "-config", cfg)
	base, dnsA := httpAddr(t, d), dnsAddr(t, d)
	waitLog(t, d, "xarfd started", 0)
	shots := artifactsDir(t)

	// The trap hit, over SMTP. Intel lists the shop's domain; the cases
	// worker opens carol's case and notifies her (notify.enabled).
	ids, err := send(d.addr, "bounce@"+opsShop, []string{opsTrapRcpt}, opsTrapHit())
	if err != nil || len(ids) != 1 {
		t.Fatalf("SMTP send: %v %v", ids, err)
	}
	report := ids[0]
	shopName := opsShop + ".dbl.e2e.example"
	waitListed(t, dnsA, shopName)
	setup, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	var caseID store.ID
	waitFor(t, setup, "carol's case", func() bool {
		r := apiDo(t, "GET", base+"/api/v1/cases?subscriber=carol", consoleOps, "", nil)
		var p struct{ Cases []store.Case }
		if r.code != 200 || json.Unmarshal(r.body, &p) != nil {
			t.Fatalf("listing cases: %d %s", r.code, r.body)
		}
		if len(p.Cases) > 0 {
			caseID = p.Cases[0].ID
		}
		return len(p.Cases) > 0
	})
	waitCase(t, setup, base, caseID, "carol's first notification", func(c store.Case) bool {
		return c.State == store.CaseNotified && len(c.Notifications) == 1
	})

	b := newBrowser(t)
	local, _, _ := strings.Cut(opsTrapRcpt, "@")
	noTrap := func(t *testing.T, ctx context.Context, where string) {
		t.Helper()
		if strings.Contains(evalJS[string](t, ctx, `document.documentElement.outerHTML`), local) {
			t.Errorf("%s shows the trap's address %s", where, opsTrapRcpt)
		}
	}

	t.Run("login", func(t *testing.T) {
		ctx := b.scenario(t)
		b.open(t, ctx, base+"/indicators")
		if code := b.login(t, ctx, base, consoleOps); code != 200 {
			t.Fatalf("logging in answered %d", code)
		}
		if loc := evalJS[string](t, ctx, `location.pathname`); loc != "/indicators" {
			t.Errorf("after the login the browser is on %s, want /indicators", loc)
		}
		b.expectClean(t)
	})

	indicatorPath := "/indicators/domain/" + opsShop
	t.Run("indicator lookup and delist", func(t *testing.T) {
		ctx := b.scenario(t)
		b.openOK(t, ctx, base+"/indicators")
		listed := evalJS[[]string](t, ctx, `[...document.querySelectorAll('[data-testid="listed-domain"] a')].map(a => a.textContent.trim())`)
		if !strings.Contains(strings.Join(listed, " "), opsShop) {
			t.Fatalf("the Indicators view does not list %s among the listed domains: %q", opsShop, listed)
		}
		b.shoot(t, ctx, base, "/indicators", shots, "indicators")
		b.shoot(t, ctx, base, indicatorPath, shots, "indicator")

		// Look it up as an operator would: pick the kind, type the value
		// (in capitals: the lookup finds the stored form).
		b.openOK(t, ctx, base+"/indicators")
		b.do(t, ctx, "filling the lookup",
			chromedp.SetValue(chromedp.CSS(`[data-testid="lookup-kind"]`), "domain"),
			chromedp.SendKeys(chromedp.CSS(`[data-testid="lookup-value"]`), strings.ToUpper(opsShop)))
		if code := b.submitNav(t, ctx, "looking the domain up", chromedp.Click(chromedp.CSS(`[data-testid="lookup-submit"]`))); code != 200 {
			t.Fatalf("the lookup answered %d: %s", code, text(t, ctx, "main"))
		}
		if loc := evalJS[string](t, ctx, `location.pathname`); loc != indicatorPath {
			t.Errorf("the lookup led to %s, want %s", loc, indicatorPath)
		}
		if v := text(t, ctx, `[data-testid="indicator-value"]`); v != opsShop {
			t.Errorf("the indicator page names %q, want %s", v, opsShop)
		}
		if st := text(t, ctx, `[data-testid="indicator-listed"]`); !strings.HasPrefix(st, "yes") {
			t.Errorf("the indicator page says listed %q, want yes", st)
		}
		if !evalJS[bool](t, ctx, `!!document.querySelector('[data-testid="indicator-hits"] a[href="/reports/`+report.String()+`"]')`) {
			t.Errorf("the indicator's hits do not link the trap hit's report %s: %s", report, text(t, ctx, `[data-testid="indicator-hits"]`))
		}
		noTrap(t, ctx, "the indicator page")
		b.expectClean(t)

		why := "shop taken down, ticket 4711"
		b.do(t, ctx, "typing the reason", chromedp.SendKeys(chromedp.CSS(`[data-testid="delist-reason"]`), why))
		if code := b.submitNav(t, ctx, "delisting", chromedp.Click(chromedp.CSS(`[data-testid="delist"]`))); code != 200 {
			t.Fatalf("delist answered %d: %s", code, text(t, ctx, "main"))
		}
		if flash := text(t, ctx, `[data-testid="flash"]`); flash == "" {
			t.Error("after Delist the page says nothing about it")
		}
		if st := text(t, ctx, `[data-testid="indicator-listed"]`); !strings.HasPrefix(st, "no") {
			t.Errorf("after Delist the page says listed %q, want no", st)
		}
		if dl := text(t, ctx, `[data-testid="indicator-delisted"]`); !strings.Contains(dl, why) || !strings.Contains(dl, "token ops") {
			t.Errorf("the page's delisting is %q, want the reason %q and who (token ops)", dl, why)
		}
		if evalJS[bool](t, ctx, `!!document.querySelector('[data-testid="delist-form"]')`) {
			t.Error("a delisted indicator is still offered Delist")
		}
		b.expectClean(t)

		// The API and the DNS zone say the same.
		r := apiDo(t, "GET", base+"/api/v1/indicators/domain/"+opsShop, consoleOps, "", nil)
		if r.code != 200 || !strings.Contains(string(r.body), `"listed":false`) || !strings.Contains(string(r.body), why) {
			t.Errorf("the API after the delisting: %d %s", r.code, r.body)
		}
		if st, _ := dig(t, dnsA, shopName, "A"); st != "NXDOMAIN" {
			t.Errorf("%s after the delisting: %s, want NXDOMAIN", shopName, st)
		}
		b.openOK(t, ctx, base+"/indicators")
		if listed := evalJS[string](t, ctx, `(document.querySelector('[data-testid="listed-domain"]') || {}).textContent || ""`); strings.Contains(listed, opsShop) {
			t.Errorf("the Indicators view still lists %s: %q", opsShop, listed)
		}
		b.expectClean(t)
	})

	casePath := "/cases/" + caseID.String()
	t.Run("case actions", func(t *testing.T) {
		ctx := b.scenario(t)
		b.openOK(t, ctx, base+"/cases")
		row := `tr[data-testid="case-row"] a[href="` + casePath + `"]`
		b.do(t, ctx, "finding carol's case", chromedp.WaitVisible(chromedp.CSS(row)))
		if st := evalJS[string](t, ctx, `document.querySelector(`+jsString(row)+`).closest("tr").textContent`); !strings.Contains(st, "notified") || !strings.Contains(st, "carol") {
			t.Errorf("carol's row reads %q, want her and the state notified", st)
		}
		b.shoot(t, ctx, base, "/cases", shots, "cases")
		b.openOK(t, ctx, base+"/cases")
		if code := b.submitNav(t, ctx, "opening the case", chromedp.Click(chromedp.CSS(row))); code != 200 {
			t.Fatalf("the case answered %d", code)
		}
		if k := text(t, ctx, `[data-testid="case-key"]`); k != "subscriber:carol" {
			t.Errorf("the case page is of %q, want subscriber:carol", k)
		}
		if facts := text(t, ctx, `[data-testid="case-facts"]`); !strings.Contains(facts, "carol@home.e2e.example") || !strings.Contains(facts, "static") {
			t.Errorf("the case's facts lack the subscriber match: %q", facts)
		}
		history := func() []string {
			return evalJS[[]string](t, ctx, `[...document.querySelectorAll('[data-testid="case-history"] li')].map(li => li.textContent.trim())`)
		}
		// The worker's doing so far: the case opened on the report, and
		// the notification moved it on.
		h0 := history()
		if len(h0) != 2 || !strings.Contains(h0[0], "open by xarfd") || !strings.Contains(h0[0], report.String()) || !strings.Contains(h0[1], "open → notified by xarfd") {
			t.Errorf("the case's history before any action: %q, want its opening on the report and the notification", h0)
		}
		if !evalJS[bool](t, ctx, `!!document.querySelector('[data-testid="case-reports"] a[href="/reports/`+report.String()+`"]')`) {
			t.Errorf("the case does not link its report %s", report)
		}
		noTrap(t, ctx, "the case page")
		b.expectClean(t)

		act := func(action, why string) {
			t.Helper()
			b.openOK(t, ctx, base+casePath)
			b.do(t, ctx, "typing the reason to "+action, chromedp.SendKeys(chromedp.CSS(`[data-testid="case-`+action+`-reason"]`), why))
			if code := b.submitNav(t, ctx, action, chromedp.Click(chromedp.CSS(`[data-testid="case-`+action+`"]`))); code != 200 {
				t.Fatalf("%s answered %d: %s", action, code, text(t, ctx, "main"))
			}
			if loc := evalJS[string](t, ctx, `location.pathname`); loc != casePath {
				t.Errorf("after %s the browser is on %s, want the case", action, loc)
			}
			if text(t, ctx, `[data-testid="flash"]`) == "" {
				t.Errorf("after %s the page says nothing about it", action)
			}
			b.expectClean(t)
		}

		// Notify: a second mail now, whatever notify.min_interval says.
		act("notify", "second notice after the customer called")
		c := waitCase(t, ctx, base, caseID, "the second notification", func(c store.Case) bool { return len(c.Notifications) == 2 })
		if n := c.Notifications[1]; n.DryRun || n.Result != "sent" || n.To != "carol@home.e2e.example" {
			t.Errorf("the operator's notification: %+v", n)
		}
		if got := evalJS[int](t, ctx, `[...document.querySelectorAll("h2")].filter(h => h.textContent === "Notifications").map(h => h.nextElementSibling.querySelectorAll("li").length)[0] || 0`); got != 2 {
			t.Errorf("the case page lists %d notifications, want 2", got)
		}

		// Restrict: the worker calls the webhook; the case becomes
		// restricted with the operator's reason.
		restrictWhy := "still spamming after two notices, ticket 4712"
		act("restrict", restrictWhy)
		waitCase(t, ctx, base, caseID, "the case to be restricted", func(c store.Case) bool { return c.State == store.CaseRestricted })
		b.openOK(t, ctx, base+casePath)
		if st := text(t, ctx, `[data-testid="case-state"]`); st != store.CaseRestricted {
			t.Errorf("the case page shows %q, want restricted", st)
		}
		if h := history(); len(h) != len(h0)+1 || !strings.Contains(h[len(h)-1], "notified → restricted by console, token ops — "+restrictWhy) {
			t.Errorf("the history after restrict: %q, want an entry notified → restricted by the console's token ops with %q", h, restrictWhy)
		}

		// Resolve: at once, and the restriction is lifted by an
		// unrestrict call.
		resolveWhy := "malware removed, customer confirmed"
		act("resolve", resolveWhy)
		if st := text(t, ctx, `[data-testid="case-state"]`); st != store.CaseResolved {
			t.Errorf("after resolve the case page shows %q, want resolved", st)
		}
		if h := history(); len(h) != len(h0)+2 || !strings.Contains(h[len(h)-1], "restricted → resolved by console, token ops — "+resolveWhy) {
			t.Errorf("the history after resolve: %q, want an entry restricted → resolved with %q", h, resolveWhy)
		}
		waitFor(t, ctx, "the unrestrict call", func() bool {
			calls, _ := hook.byAction()
			return len(calls[cases.ActionUnrestrict]) >= 1
		})
		calls, bad := hook.byAction()
		if len(bad) != 0 {
			t.Errorf("webhook calls that failed their signature: %v", bad)
		}
		// The unrestrict call is made after the restrict call was done:
		// a second restrict call would have come before it.
		if r := calls[cases.ActionRestrict]; len(r) != 1 || r[0].Reason != restrictWhy || r[0].Subscriber.ID != "carol" || r[0].CaseID != caseID.String() {
			t.Errorf("restrict calls: %+v, want one for carol's case with the operator's reason", r)
		}
		if u := calls[cases.ActionUnrestrict]; len(u) != 1 || u[0].Reason != resolveWhy {
			t.Errorf("unrestrict calls: %+v, want one with the reason to resolve", u)
		}
		b.shoot(t, ctx, base, casePath, shots, "case")
		b.expectClean(t)
	})

	// Both notifications reached the SMTP server, addressed to carol,
	// without the trap's address.
	mailed, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	var msgs []mailpitMsg
	waitFor(t, mailed, "two notifications at the SMTP server", func() bool {
		msgs = mp.messages(t)
		return len(msgs) >= 2
	})
	to := 0
	for _, m := range msgs {
		if len(m.To) == 1 && m.To[0].Address == "carol@home.e2e.example" {
			to++
		}
		leakcheck.Check(t, mp.raw(t, m.ID), []string{opsTrapRcpt})
	}
	if len(msgs) != 2 || to != 2 {
		t.Errorf("the SMTP server got %d mails, %d of them to carol; want 2 notifications", len(msgs), to)
	}
}
