package console

import (
	"crypto/sha256"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/xarfd/xarfd/api"
)

const sessionCookie = "xarfd_session"

// session is one login. Only the sha256 of its id is kept as the key, so
// the server's memory does not hold the cookie values themselves.
type session struct {
	key     [sha256.Size]byte
	hash    [sha256.Size]byte // the token's
	created time.Time
	expires time.Time
}

// sessions is the set of logins, bounded: a new one beyond max evicts
// the oldest (a flood of logins with a stolen token pushes out others,
// which then log in again; it never grows memory).
type sessions struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]*session
	max int
}

func newSessions(max int) *sessions {
	return &sessions{m: map[[sha256.Size]byte]*session{}, max: max}
}

func (ss *sessions) add(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for len(ss.m) >= ss.max {
		var oldest *session
		for _, x := range ss.m {
			if oldest == nil || x.created.Before(oldest.created) {
				oldest = x
			}
		}
		delete(ss.m, oldest.key)
	}
	ss.m[s.key] = s
}

func (ss *sessions) get(id string, now time.Time) (*session, bool) {
	k := sha256.Sum256([]byte(id))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[k]
	if !ok {
		return nil, false
	}
	if !now.Before(s.expires) {
		delete(ss.m, k)
		return s, false
	}
	return s, true
}

func (ss *sessions) remove(k [sha256.Size]byte) {
	ss.mu.Lock()
	delete(ss.m, k)
	ss.mu.Unlock()
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// sessionOf returns the live session of r, or nil and why not.
func (c *Console) sessionOf(r *http.Request) (*session, string) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, ""
	}
	s, ok := c.sessions.get(ck.Value, c.o.Now())
	if !ok {
		if s != nil {
			return nil, "Your session expired. Log in again."
		}
		return nil, "Your session ended (the daemon restarted, or you logged out). Log in again."
	}
	return s, ""
}

// limiter counts failed logins per client address.
type limiter struct {
	mu     sync.Mutex
	fails  map[netip.Addr][]time.Time
	max    int
	window time.Duration
	maxIPs int
}

func newLimiter(max int, window time.Duration, maxIPs int) *limiter {
	return &limiter{fails: map[netip.Addr][]time.Time{}, max: max, window: window, maxIPs: maxIPs}
}

// blocked reports whether ip has failed max times within the window, and
// until when.
func (l *limiter) blocked(ip netip.Addr, now time.Time) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.recent(ip, now)
	if len(f) >= l.max {
		return true, f[0].Add(l.window)
	}
	return false, time.Time{}
}

func (l *limiter) fail(ip netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.recent(ip, now)
	if f == nil && len(l.fails) >= l.maxIPs {
		for k, v := range l.fails {
			if len(v) == 0 || now.Sub(v[len(v)-1]) >= l.window {
				delete(l.fails, k)
			}
		}
		for k := range l.fails { // still full: forget one at random
			if len(l.fails) < l.maxIPs {
				break
			}
			delete(l.fails, k)
		}
	}
	if len(f) >= l.max {
		f = f[1:]
	}
	l.fails[ip] = append(f, now)
}

// recent drops ip's failures older than the window.
func (l *limiter) recent(ip netip.Addr, now time.Time) []time.Time {
	f := l.fails[ip]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.window {
		i++
	}
	if i == len(f) {
		delete(l.fails, ip)
		return nil
	}
	f = f[i:]
	l.fails[ip] = f
	return f
}

func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		// One IPv6 client holds a /64.
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func remoteIP(r *http.Request) string {
	if a := clientIP(r); a.IsValid() {
		return a.String()
	}
	return "unknown"
}

// loginQuery is the query of the login page that returns to next.
func loginQuery(next, why string) string {
	q := url.Values{}
	if safeNext(next) && next != "/" {
		q.Set("next", next)
	}
	if why != "" {
		q.Set("why", why)
	}
	return q.Encode()
}

// safeNext accepts only a path of this site: never //host or /\host,
// which browsers take for another site.
func safeNext(next string) bool {
	return strings.HasPrefix(next, "/") && !strings.HasPrefix(next, "//") && !strings.HasPrefix(next, "/\\") &&
		!strings.ContainsAny(next, "\r\n")
}

type loginData struct {
	Next, Why, Error string
	Open             bool
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	v := &viewer{CSRF: c.preLoginCSRF(w, r)}
	d := loginData{Next: r.URL.Query().Get("next"), Why: r.URL.Query().Get("why"), Open: c.tokenSet().Open()}
	if !safeNext(d.Next) {
		d.Next = "/"
	}
	// why comes from the query: show only the texts this package writes.
	if !knownWhy(d.Why) {
		d.Why = ""
	}
	c.render(w, r, http.StatusOK, "login", &page{Title: "Log in", viewer: v, Data: d})
}

var whys = []string{
	"Your session expired. Log in again.",
	"Your session ended (the daemon restarted, or you logged out). Log in again.",
	"The token of your session is no longer configured. Log in again.",
	"The token of your session no longer has the read scope.",
	"You logged out.",
}

func knownWhy(s string) bool {
	for _, w := range whys {
		if s == w {
			return true
		}
	}
	return false
}

// login exchanges a token with the read scope for a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	v := &viewer{CSRF: c.preLoginCSRF(w, r)}
	next := r.PostFormValue("next")
	if !safeNext(next) {
		next = "/"
	}
	again := func(code int, msg string) {
		c.render(w, r, code, "login", &page{Title: "Log in", viewer: v, Data: loginData{Next: next, Error: msg}})
	}
	if !c.csrfOK(r, v.CSRF) {
		again(http.StatusForbidden, "The form expired. Try again.")
		return
	}
	ts := c.tokenSet()
	if ts.Open() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	ip, now := clientIP(r), c.o.Now()
	if b, until := c.limiter.blocked(ip, now); b {
		w.Header().Set("Retry-After", retryAfter(until.Sub(now)))
		c.o.Logger.Warn().Str("remote", remoteIP(r)).Msg("console: login refused: too many wrong tokens from this address")
		again(http.StatusTooManyRequests, "Too many wrong tokens from your address. Wait a quarter of an hour and try again.")
		return
	}
	p, ok := ts.Lookup(strings.TrimSpace(r.PostFormValue("token")))
	if !ok {
		c.limiter.fail(ip, now)
		c.o.Logger.Warn().Str("remote", remoteIP(r)).Msg("console: login with an unknown token")
		again(http.StatusUnauthorized, "That token is not configured (http.tokens).")
		return
	}
	if !p.Has(api.ScopeRead) {
		c.o.Logger.Warn().Str("token", p.Name).Msg("console: login refused: the token has no read scope")
		again(http.StatusForbidden, "That token has no read scope: the console needs read (or admin).")
		return
	}
	ttl := c.cfg().HTTP.Console.SessionTTL.D()
	id := randomID()
	s := &session{key: sha256.Sum256([]byte(id)), hash: p.Hash, created: now, expires: now.Add(ttl)}
	// A session cookie already present is replaced, never reused: no
	// fixation.
	if old, err := r.Cookie(sessionCookie); err == nil {
		c.sessions.remove(sha256.Sum256([]byte(old.Value)))
	}
	c.sessions.add(s)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure(r), MaxAge: int(ttl / time.Second), Expires: s.expires})
	c.o.Logger.Info().Str("token", p.Name).Str("remote", remoteIP(r)).Msg("console: logged in")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session; it needs the session's CSRF token, so that
// another site cannot log a desk out.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	s, _ := c.sessionOf(r)
	if s == nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	if !c.csrfOK(r, c.sessionCSRF(s)) {
		c.failAs(w, r, &viewer{}, http.StatusForbidden, "Form expired", "The form's security token does not match this session. Reload the page and try again.")
		return
	}
	c.sessions.remove(s.key)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: c.secure(r), MaxAge: -1})
	http.Redirect(w, r, "/login?"+loginQuery("/", "You logged out."), http.StatusSeeOther)
}

func retryAfter(d time.Duration) string {
	s := int(d/time.Second) + 1
	if s < 1 {
		s = 1
	}
	return itoa(s)
}

// sessionCSRF is the CSRF token of a session's pages.
func (c *Console) sessionCSRF(s *session) string { return c.csrfFor("s", string(s.key[:])) }
