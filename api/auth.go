package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
)

// Scopes a token can hold.
const (
	scopeRead   = "read"
	scopeSubmit = "submit"
	scopeAdmin  = "admin"
)

// The scopes as other handlers of the listener (the console) name them.
const (
	ScopeRead   = scopeRead
	ScopeSubmit = scopeSubmit
	ScopeAdmin  = scopeAdmin
)

type token struct {
	name     string
	hash     [sha256.Size]byte
	scopes   []string
	channels []string // submit only to these; empty = all
}

// has reports whether the token grants scope; admin implies read.
func (t *token) has(scope string) bool {
	return slices.Contains(t.scopes, scope) || (scope == scopeRead && slices.Contains(t.scopes, scopeAdmin))
}

// mayFeed reports whether the token may submit to channel.
func (t *token) mayFeed(channel string) bool {
	return t == nil || len(t.channels) == 0 || slices.Contains(t.channels, channel)
}

func parseTokens(cfg []config.Token, log zerolog.Logger) []token {
	var out []token
	for _, ct := range cfg {
		b, err := hex.DecodeString(strings.TrimSpace(ct.SHA256))
		if err != nil || len(b) != sha256.Size {
			// config validation refuses this; never let such a token in.
			log.Error().Str("token", ct.Name).Msg("http.tokens: sha256 is not 64 hex digits; token ignored")
			continue
		}
		t := token{name: ct.Name, scopes: ct.Scopes, channels: ct.Channels}
		copy(t.hash[:], b)
		out = append(out, t)
	}
	if len(cfg) > 0 && len(out) == 0 {
		// Tokens were meant to be required: require one that cannot match.
		out = append(out, token{name: "(none valid)"})
	}
	return out
}

type tokenKey struct{}

// tokenOf returns the request's authenticated token (nil when the API is
// open).
func tokenOf(r *http.Request) *token {
	t, _ := r.Context().Value(tokenKey{}).(*token)
	return t
}

// lookup finds the token whose hash matches presented. It hashes the
// value and compares it with every configured hash in constant time,
// without stopping at a match.
func lookup(tokens []token, presented string) *token {
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range tokens {
		eq := subtle.ConstantTimeCompare(sum[:], tokens[i].hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return nil
	}
	return &tokens[found]
}

// authorize requires a bearer token with scope when tokens are
// configured.
func (s *Server) authorize(scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokens := s.view.Load().tokens
		if len(tokens) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		presented, ok := bearer(r.Header.Get("Authorization"))
		var t *token
		if ok {
			t = lookup(tokens, presented)
		}
		if t == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="xarfd"`)
			msg := "missing bearer token"
			if ok {
				msg = "invalid token"
			}
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		infoOf(r).token = t.name
		if !t.has(scope) {
			writeError(w, http.StatusForbidden, "token lacks the "+scope+" scope")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, t)))
	})
}

// bearer extracts the token of an "Authorization: Bearer <token>" value.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// remoteIP is the address of the HTTP client (the TCP peer; forwarding
// headers are not trusted).
func remoteIP(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return ""
}

// Principal is a configured token as another handler of the listener
// (the console) sees it: its name, its scopes and the sha256 of its
// value, never the value.
type Principal struct {
	Name   string
	Hash   [sha256.Size]byte
	Scopes []string
	// Channels limits the submit scope to these channels; empty = all.
	Channels []string
}

// Has reports whether the token grants scope; admin implies read.
func (p Principal) Has(scope string) bool { return (&token{scopes: p.Scopes}).has(scope) }

// MayFeed reports whether the token may act on channel's data (submit to
// it, retry or cancel its outbox entries).
func (p Principal) MayFeed(channel string) bool {
	return (&token{channels: p.Channels}).mayFeed(channel)
}

// Tokens is a parsed http.tokens, hashed and compared as the API does.
type Tokens struct{ list []token }

// ParseTokens parses http.tokens as the API does: an entry whose sha256
// is not 64 hex digits is logged and ignored, and when no entry is valid
// no value matches (tokens stay required).
func ParseTokens(cfg []config.Token, log zerolog.Logger) Tokens {
	return Tokens{parseTokens(cfg, log)}
}

// Open reports that no tokens are configured: the API is open.
func (ts Tokens) Open() bool { return len(ts.list) == 0 }

// Lookup finds the token whose value is presented (constant time).
func (ts Tokens) Lookup(presented string) (Principal, bool) {
	return principal(lookup(ts.list, presented))
}

// Find returns the token whose hash is h, if it is still configured (a
// reload may have removed it or changed its scopes); constant time.
func (ts Tokens) Find(h [sha256.Size]byte) (Principal, bool) {
	found := -1
	for i := range ts.list {
		eq := subtle.ConstantTimeCompare(h[:], ts.list[i].hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Principal{}, false
	}
	return principal(&ts.list[found])
}

func principal(t *token) (Principal, bool) {
	if t == nil {
		return Principal{}, false
	}
	return Principal{Name: t.name, Hash: t.hash, Scopes: slices.Clone(t.scopes), Channels: slices.Clone(t.channels)}, true
}
