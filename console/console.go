// Package console is the web console: server-rendered pages over the
// store for abuse desks and operators, served on the API's listener at /
// (api.Options.Console), behind the API's guards.
//
// Pages are html/template, enhanced with htmx (live report rows over
// Server-Sent Events) and uPlot (the overview's charts); the browser
// assets are vendored from npm (scripts/vendor-console) and embedded, so
// the binary is the whole console. Every page carries a strict
// Content-Security-Policy: scripts and styles come only from /assets/,
// nothing inline, so a message shown as evidence cannot run anything even
// if it got past the escaping.
//
// With http.tokens configured a login page exchanges a token holding the
// read scope for a session cookie; every write (a POST form) needs the
// submit scope and the session's CSRF token. See docs/ui.md.
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// CSP is the Content-Security-Policy of every console page: only our own
// scripts, styles and connections; no frames of us elsewhere, no forms
// elsewhere, no <base>. frame-src 'self' lets the evidence page show an
// HTML part in a sandboxed frame served by us under its own, stricter
// policy (evidencePartCSP).
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; frame-src 'self'"

// Limits of the console (docs/operations.md).
const (
	// MaxSessions bounds the logins held in memory; a new one beyond it
	// evicts the oldest.
	MaxSessions = 1000
	// LoginFailures wrong tokens from one IP address within
	// LoginWindow make it wait for the window to pass (429).
	LoginFailures = 10
	LoginWindow   = 15 * time.Minute
	// maxLimiterIPs bounds the addresses the login limiter remembers.
	maxLimiterIPs = 4096
	// scanLimit bounds the reports one listing reads to fill a page when
	// filters the store's indexes cannot answer (evidence source, text)
	// are set; the page then offers to continue.
	scanLimit = 5000
	// pageSize is the length of the console's listings.
	pageSize = 50
	// liveBuffer is how many reports a live page may lag behind before
	// its stream is dropped (it reconnects and misses those).
	liveBuffer = 64
	// MaxLiveStreams bounds the open live streams (each holds a
	// connection, a goroutine and a hub subscription); one more is
	// answered 503 and its page retries later.
	MaxLiveStreams = 256
)

// CaseService acts on own-network cases (package cases): the same service
// the API's case actions call.
type CaseService = api.CaseService

// Options are what the console reads and acts through.
type Options struct {
	// Config returns the configuration in force (it changes on SIGHUP).
	Config func() *config.Config
	Store  *store.Store
	// Hub is the live stream of new reports; nil: no live updates.
	Hub *api.Hub
	// Intel serves the indicators; nil: no channel uses intel.
	Intel *intel.Service
	// Cases acts on own-network cases; nil: cases are not running.
	Cases CaseService
	// Reprocess runs a quarantined message through ingest again (after a
	// parser fix): ingest.Ingester.Reprocess of the ingester in force.
	// nil hides the action.
	Reprocess func(id store.ID) (ingest.Result, error)
	// DeleteQuarantined deletes a quarantined message (as the API's:
	// ingest.Ingester.DeleteQuarantined, on every node of a cluster);
	// nil = Store.DeleteQuarantined.
	DeleteQuarantined func(id store.ID) error
	// Cancel cancels an outbox entry (as the API's); nil = Store.Cancel.
	Cancel api.CancelFunc
	// Retry requeues an outbox entry (as the API's); nil = Store.Requeue.
	Retry  api.CancelFunc
	Logger zerolog.Logger
	// Metrics counts refused live streams; nil counts nothing.
	Metrics *metrics.Metrics
	// Now is the clock (tests); nil = time.Now.
	Now func() time.Time
	// scan is how many reports a filtered listing examines (tests);
	// 0 = scanLimit.
	scan int
	// maxLive bounds the live streams (tests); 0 = MaxLiveStreams.
	maxLive int
}

// Console is the console's http.Handler.
type Console struct {
	o        Options
	mux      *http.ServeMux
	pages    *pages
	assets   *assets
	sessions *sessions
	limiter  *limiter
	// csrfKey makes CSRF tokens out of session ids and pre-login cookies;
	// it is new at every start, which logs nobody out (sessions do not
	// survive a restart either).
	csrfKey [32]byte
	tokens  atomic.Pointer[tokenCache]
	closing closer
	// live counts the open live streams.
	live atomic.Int64
}

// tokenCache is http.tokens parsed for one configuration.
type tokenCache struct {
	cfg    *config.Config
	tokens api.Tokens
}

// New returns the console.
func New(o Options) (*Console, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Cancel == nil {
		o.Cancel = api.StoreCancel(o.Store)
	}
	if o.Retry == nil {
		st := o.Store
		o.Retry = func(_ context.Context, id store.ID, now time.Time, reason string) (*store.OutboxEntry, error) {
			return st.Requeue(id, now, reason)
		}
	}
	if o.DeleteQuarantined == nil {
		o.DeleteQuarantined = o.Store.DeleteQuarantined
	}
	if o.scan <= 0 {
		o.scan = scanLimit
	}
	if o.maxLive <= 0 {
		o.maxLive = MaxLiveStreams
	}
	c := &Console{o: o, sessions: newSessions(MaxSessions), limiter: newLimiter(LoginFailures, LoginWindow, maxLimiterIPs),
		closing: closer{ch: make(chan struct{})}}
	rand.Read(c.csrfKey[:])
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if c.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	c.mux = c.routes()
	return c, nil
}

func (c *Console) cfg() *config.Config { return c.o.Config() }

// tokenSet returns http.tokens of the configuration in force, parsed
// once per configuration.
func (c *Console) tokenSet() api.Tokens {
	cfg := c.cfg()
	if tc := c.tokens.Load(); tc != nil && tc.cfg == cfg {
		return tc.tokens
	}
	tc := &tokenCache{cfg: cfg, tokens: api.ParseTokens(cfg.HTTP.Tokens, c.o.Logger)}
	c.tokens.Store(tc)
	return tc.tokens
}

func (c *Console) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /assets/{path...}", c.serveAsset)
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.HandleFunc("POST /logout", c.logout)

	read := func(pattern string, h http.HandlerFunc) { m.Handle(pattern, c.needRead(h)) }
	write := func(pattern string, h http.HandlerFunc) { m.Handle(pattern, c.needRead(c.needWrite(h))) }
	read("GET /{$}", c.overview)
	read("GET /overview/stats.json", c.overviewStats)
	read("GET /reports", c.reports)
	read("GET /reports/live", c.reportsLive)
	read("GET /reports/{id}", c.report)
	read("GET /reports/{id}/evidence", c.evidence)
	read("GET /reports/{id}/evidence.eml", c.evidenceRaw)
	read("GET /reports/{id}/evidence/part/{n}", c.evidencePart)
	read("GET /quarantine", c.quarantine)
	write("POST /quarantine/{id}/reprocess", c.reprocess)
	write("POST /quarantine/{id}/delete", c.deleteQuarantined)
	read("GET /outbox", c.outbox)
	read("GET /outbox/{id}/message", c.outboxMessage)
	write("POST /outbox/{id}/retry", c.outboxAction("retry"))
	write("POST /outbox/{id}/cancel", c.outboxAction("cancel"))
	read("GET /indicators", c.indicators)
	read("GET /indicators/{kind}/{value}", c.indicator)
	write("POST /indicators/{kind}/{value}/delist", c.delist)
	read("GET /cases", c.cases)
	read("GET /cases/{id}", c.caseView)
	write("POST /cases/{id}/{action}", c.caseAction)
	m.HandleFunc("/", c.notFound)
	return m
}

// ServeHTTP serves the console. Every answer carries the security
// headers; pages are never cached (they show live state and a CSRF
// token).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if !c.cfg().HTTP.Console.Enabled {
		http.Error(w, "the console is off (http.console.enabled)", http.StatusNotFound)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/assets/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// viewer is who looks at a page: what the layout and the handlers need.
type viewer struct {
	// Name is the token's name; "" when the console is open.
	Name string
	Open bool
	// CanWrite: the submit scope (always when open).
	CanWrite bool
	// CSRF is the token every form of the page carries.
	CSRF string
	// channels limits the submit scope to these; empty = all.
	channels []string
}

// mayFeed reports whether the viewer may act on channel's data.
func (v *viewer) mayFeed(channel string) bool {
	return len(v.channels) == 0 || slices.Contains(v.channels, channel)
}

type viewerKey struct{}

func viewerOf(r *http.Request) *viewer {
	v, _ := r.Context().Value(viewerKey{}).(*viewer)
	if v == nil {
		return &viewer{}
	}
	return v
}

// by is how an action names who did it, as the API's do.
func (v *viewer) by(r *http.Request) string {
	if v.Open {
		return "console (no tokens configured) from " + remoteIP(r)
	}
	return "console, token " + v.Name
}

// needRead lets a request through when the console is open, or when its
// session is alive and its token is still configured with the read
// scope; otherwise a page request goes to the login page.
func (c *Console) needRead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, why := c.identify(w, r)
		if v == nil {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				if why == "" {
					why = "Log in with a token that has the read scope, then try again."
				}
				c.fail(w, r, http.StatusUnauthorized, "Log in first", why)
				return
			}
			http.Redirect(w, r, "/login?"+loginQuery(r.URL.RequestURI(), why), http.StatusSeeOther)
			return
		}
		if v.Name != "" {
			api.NoteToken(r, v.Name)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)))
	})
}

// needWrite requires the submit scope and the page's CSRF token.
func (c *Console) needWrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := viewerOf(r)
		if !c.csrfOK(r, v.CSRF) {
			c.fail(w, r, http.StatusForbidden, "Form expired", "The form's security token is missing or does not match this session. Go back, reload the page and try again.")
			return
		}
		if !v.CanWrite {
			c.fail(w, r, http.StatusForbidden, "Not allowed", "Your token has no submit scope: it may look, not act. Log in with a token that has the submit scope.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// identify returns the viewer of r, or nil and why it must log in. When
// the console is open everybody is a viewer with every right; the CSRF
// token then hangs on a cookie of its own.
func (c *Console) identify(w http.ResponseWriter, r *http.Request) (*viewer, string) {
	ts := c.tokenSet()
	if ts.Open() {
		return &viewer{Open: true, CanWrite: true, CSRF: c.preLoginCSRF(w, r)}, ""
	}
	s, why := c.sessionOf(r)
	if s == nil {
		return nil, why
	}
	p, ok := ts.Find(s.hash)
	if !ok {
		c.sessions.remove(s.key)
		return nil, "The token of your session is no longer configured. Log in again."
	}
	if !p.Has(api.ScopeRead) {
		c.sessions.remove(s.key)
		return nil, "The token of your session no longer has the read scope."
	}
	return &viewer{Name: p.Name, CanWrite: p.Has(api.ScopeSubmit), CSRF: c.sessionCSRF(s), channels: p.Channels}, ""
}

// csrfFor derives a CSRF token from a secret the browser holds in an
// HttpOnly cookie: a page of another site can neither read the cookie
// nor the token.
func (c *Console) csrfFor(kind, secret string) string {
	m := hmac.New(sha256.New, c.csrfKey[:])
	m.Write([]byte(kind + "\x00" + secret))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfOK compares the request's token (form field csrf, or the
// X-CSRF-Token header of an htmx request) with want in constant time.
func (c *Console) csrfOK(r *http.Request, want string) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return want != "" && got != "" && hmac.Equal([]byte(got), []byte(want))
}

const csrfCookie = "xarfd_csrf"

// preLoginCSRF returns the CSRF token tied to the browser's csrf cookie,
// setting one first when it has none (the login form, and every form of
// an open console).
func (c *Console) preLoginCSRF(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 43 {
		return c.csrfFor("c", ck.Value)
	}
	v := randomID()
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure(r)})
	// The request itself may be the POST that needs it: a fresh cookie
	// never matches a token sent with it.
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: v})
	return c.csrfFor("c", v)
}

// secure says whether cookies get the Secure attribute.
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || c.cfg().HTTP.Console.SecureCookie
}

// randomID is 32 random bytes, base64url without padding (43 bytes).
func randomID() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	v, _ := c.identify(w, r)
	if v == nil {
		v = &viewer{}
	}
	c.failAs(w, r, v, http.StatusNotFound, "Not found", "There is no such page. Use the navigation above.")
}

// fail renders an error page with a fixed text: never an internal
// error's text.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, code int, title, msg string) {
	c.failAs(w, r, viewerOf(r), code, title, msg)
}

func (c *Console) failAs(w http.ResponseWriter, r *http.Request, v *viewer, code int, title, msg string) {
	c.render(w, r, code, "error", &page{Title: title, viewer: v, Data: msg})
}

// internal logs err and answers 500 (503 while the store cannot commit).
func (c *Console) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	code, msg := http.StatusInternalServerError, "Something went wrong on the server; the log says what. Try again, or ask the operator."
	switch {
	case store.IsClosed(err):
		code, msg = http.StatusServiceUnavailable, "The daemon is stopping. Try again in a moment."
	case errors.Is(err, store.ErrCommit):
		// In a cluster also an action the stream did not acknowledge
		// (no quorum): nothing changed on any node.
		w.Header().Set("Retry-After", "30")
		code, msg = http.StatusServiceUnavailable, "The change cannot be stored now (disk full, an I/O error, or the cluster has no quorum); nothing changed, /healthz says why. Try again later."
	case errors.Is(err, store.ErrDamaged):
		msg = "This record is damaged and cannot be shown; restore the store from a backup (docs/operations.md)."
	}
	c.o.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("console: " + what)
	c.fail(w, r, code, "Error", msg)
}
