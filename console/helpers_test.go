package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/html"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/internal/syncbuf"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
	"github.com/xarfd/xarfd/xarf"
)

// Tokens of the test configuration (it holds their sha256).
const (
	tokRead   = "reader-token-0123456789"
	tokWrite  = "writer-token-0123456789"
	tokSubmit = "submit-only-token-01234"
	tokFeed   = "fbl-feeder-token-012345"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testYAML(dir string, tokens bool) string {
	y := fmt.Sprintf(`
hostname: mx.test.example
data_dir: %s
sender: {org: Test, contact: abuse@test.example, domain: test.example}
smtp: {listen: ["127.0.0.1:0"]}
own_networks: ["198.18.0.0/15"]
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@test.example"]
  - name: trap
    kind: trap
    addresses: ["*@trap.test.example"]
    redact: {recipients: true, domains: [trap.test.example]}
    uses: [report, store, intel, own]
    trusted_relays: ["203.0.113.0/24"]
intel:
  ip_zone: bl.test.example
  domain_zone: dbl.test.example
subscribers:
  static_file: %s
`, dir, filepath.Join(dir, "subscribers.csv"))
	if tokens {
		y += fmt.Sprintf(`
http:
  tokens:
    - {name: reader, sha256: %q, scopes: [read]}
    - {name: writer, sha256: %q, scopes: [read, submit]}
    - {name: submitter, sha256: %q, scopes: [submit]}
    - {name: feeder, sha256: %q, scopes: [read, submit], channels: [fbl]}
`, sha(tokRead), sha(tokWrite), sha(tokSubmit), sha(tokFeed))
	}
	return y
}

type env struct {
	t     testing.TB
	dir   string
	cfg   atomic.Pointer[config.Config]
	st    *store.Store
	in    *ingest.Ingester
	inP   atomic.Pointer[ingest.Ingester] // what Reprocess uses (a reload swaps it)
	hub   *api.Hub
	intel *intel.Service
	cm    *cases.Manager
	c     *Console
	ts    *httptest.Server
	log   *syncbuf.Buffer
	now   atomic.Pointer[time.Time]
	mu    sync.Mutex
}

// newEnv runs the console over a real store, ingester, intel service and
// case manager in a temporary directory, behind a real HTTP server.
func newEnv(t testing.TB, tokens bool, tune ...func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "subscribers.csv"), []byte("198.18.0.0/24,sub-1,sub1@isp.example,Jane Doe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(testYAML(dir, tokens)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, st: storetest.Open(t, dir), log: &syncbuf.Buffer{}}
	e.cfg.Store(cfg)
	m := metrics.New()
	e.hub = api.NewHub(m)
	schema, err := xarf.EmbeddedValidator()
	if err != nil {
		t.Fatal(err)
	}
	if e.intel, err = intel.New(cfg, e.st, intel.Options{Metrics: intel.NewMetrics(m), Logger: zerolog.New(e.log)}); err != nil {
		t.Fatal(err)
	}
	if e.cm, err = cases.New(cfg, e.st, cases.Options{Logger: zerolog.New(e.log)}); err != nil {
		t.Fatal(err)
	}
	e.in, err = ingest.New(cfg, e.st, ingest.Options{Metrics: m, OnReport: e.hub.Publish, Validator: ingest.XARFValidator(schema)})
	if err != nil {
		t.Fatal(err)
	}
	e.inP.Store(e.in)
	o := Options{Config: e.cfg.Load, Store: e.st, Hub: e.hub, Intel: e.intel, Cases: e.cm, Logger: zerolog.New(e.log),
		Reprocess: func(id store.ID) (ingest.Result, error) { return e.inP.Load().Reprocess(id) },
		Now: func() time.Time {
			if p := e.now.Load(); p != nil {
				return *p
			}
			return time.Now()
		}}
	for _, f := range tune {
		f(&o)
	}
	if e.c, err = New(o); err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewServer(e.c)
	t.Cleanup(func() { e.c.Close(); e.ts.Close() })
	return e
}

// setNow moves the console's clock.
func (e *env) setNow(t time.Time) { e.now.Store(&t) }

// trapHit stores a trap hit relayed from origin (a Received hop) and
// returns its id; the recipient is redacted.
func (e *env) trapHit(origin, subject, body string) store.ID {
	e.t.Helper()
	raw := "Received: from spam.example (spam.example [" + origin + "]) by mx.test.example; " + time.Now().UTC().Format(time.RFC1123Z) + "\r\n" +
		"From: Spammer <spammer@spam-domain.biz>\r\nTo: victim@trap.test.example\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@spam.example>\r\nDate: " + time.Now().UTC().Format(time.RFC1123Z) + "\r\n" + body
	return e.accept("trap", "victim@trap.test.example", raw, "127.0.0.1")
}

func (e *env) accept(channel, rcpt, raw, peer string) store.ID {
	e.t.Helper()
	env := store.Envelope{PeerIP: netip.MustParseAddr(peer), PeerPort: 40000, HELO: "relay.example", MailFrom: "spammer@spam-domain.biz", Via: "smtp"}
	res, err := e.in.Accept(env, []ingest.Delivery{{Channel: e.cfg.Load().Channel(channel), Rcpts: []string{rcpt}}}, []byte(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	return res[0].ID
}

// client is a browser: a cookie jar, no redirects followed.
type client struct {
	e   *env
	hc  *http.Client
	jar *cookiejar.Jar
}

func (e *env) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{e: e, jar: jar, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type reply struct {
	code int
	h    http.Header
	body string
}

func (c *client) do(method, path string, form url.Values, hdr ...string) reply {
	c.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.e.ts.URL+path, body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.e.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

func (c *client) get(path string) reply { return c.do("GET", path, nil) }

// page GETs path, wants code, and checks what every page must be: the
// CSP header and an HTML document without inline script or style.
func (c *client) page(path string, code int) reply {
	c.e.t.Helper()
	r := c.get(path)
	if r.code != code {
		c.e.t.Fatalf("GET %s = %d, want %d\n%s", path, r.code, code, short(2000, r.body))
	}
	checkPage(c.e.t, path, r)
	return r
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the forms on path.
func (c *client) csrf(path string) string {
	c.e.t.Helper()
	r := c.get(path)
	m := csrfRE.FindStringSubmatch(r.body)
	if m == nil {
		c.e.t.Fatalf("GET %s (%d): no CSRF field\n%s", path, r.code, short(2000, r.body))
	}
	return html.UnescapeString(m[1])
}

// login logs in with tok and wants code.
func (c *client) login(tok string, code int) reply {
	c.e.t.Helper()
	r := c.do("POST", "/login", url.Values{"csrf": {c.csrf("/login")}, "token": {tok}, "next": {"/reports"}})
	if r.code != code {
		c.e.t.Fatalf("login with %q = %d, want %d\n%s", tok, r.code, code, short(2000, r.body))
	}
	return r
}

// post sends a form with the page's CSRF token taken from csrfFrom.
func (c *client) post(path, csrfFrom string, form url.Values) reply {
	c.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if csrfFrom != "" {
		form.Set("csrf", c.csrf(csrfFrom))
	}
	return c.do("POST", path, form)
}

// checkPage asserts the security headers of a console page and that its
// HTML has no inline script, no event handler attribute, no style
// attribute or element and no javascript: URL: what the CSP forbids must
// not be there to begin with.
func checkPage(t testing.TB, path string, r reply) {
	t.Helper()
	if got := r.h.Get("Content-Security-Policy"); got != CSP {
		t.Errorf("GET %s: Content-Security-Policy = %q", path, got)
	}
	if r.h.Get("X-Content-Type-Options") != "nosniff" || r.h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("GET %s: security headers missing: %v", path, r.h)
	}
	if !strings.HasPrefix(r.h.Get("Content-Type"), "text/html") {
		return
	}
	for _, p := range inlineProblems(r.body) {
		t.Errorf("GET %s: %s", path, p)
	}
}

// inlineProblems lists what a strict CSP would block in doc.
func inlineProblems(doc string) []string {
	var out []string
	z := html.NewTokenizer(strings.NewReader(doc))
	inScript := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return out
		case html.TextToken:
			if inScript && strings.TrimSpace(string(z.Text())) != "" {
				out = append(out, "inline script: "+short(80, string(z.Text())))
			}
		case html.EndTagToken:
			if n, _ := z.TagName(); string(n) == "script" {
				inScript = false
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			n, more := z.TagName()
			tag := string(n)
			hasSrc := false
			for more {
				var k, v []byte
				k, v, more = z.TagAttr()
				key, val := strings.ToLower(string(k)), strings.ToLower(strings.TrimSpace(string(v)))
				switch {
				case strings.HasPrefix(key, "on"):
					out = append(out, "event handler attribute "+key+" on <"+tag+">")
				case key == "style":
					out = append(out, "style attribute on <"+tag+">")
				case key == "src":
					hasSrc = true
					fallthrough
				case key == "href" || key == "action" || key == "formaction":
					if strings.HasPrefix(val, "javascript:") || strings.HasPrefix(val, "data:text/html") {
						out = append(out, "script URL in "+key+" of <"+tag+">")
					}
				case strings.HasPrefix(key, "hx-on") || (key == "hx-vals" && strings.HasPrefix(val, "js:")):
					out = append(out, "htmx script attribute "+key)
				}
			}
			switch tag {
			case "script":
				if !hasSrc {
					out = append(out, "<script> without src")
				}
				inScript = tt == html.StartTagToken
			case "style":
				out = append(out, "<style> element")
			}
		}
	}
}

// waitCtx bounds a test that waits for an event (a hang guard, not a
// timing assertion).
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
