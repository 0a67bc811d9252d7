package api

import (
	"crypto/sha256"
	"net/http"
	"testing"

	"github.com/rs/zerolog"
)

// The console gets every path that is not the API's, behind the API's
// guards; the API's own paths, known or not, stay JSON.
func TestConsoleMount(t *testing.T) {
	console := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		NoteToken(r, "from-a-session")
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("console " + r.URL.Path))
	})
	e := newEnv(t, false, func(o *Options) { o.Console = console })
	for _, p := range []string{"/", "/reports", "/assets/x.js", "/apis"} {
		r := e.get(p, "")
		if r.code != 200 || string(r.body) != "console "+p {
			t.Errorf("GET %s: %d %q, want the console", p, r.code, r.body)
		}
		if r.h.Get("X-Request-Id") == "" {
			t.Errorf("GET %s: no X-Request-Id: the request log does not wrap the console", p)
		}
	}
	if !contains(e.log.String(), `"token":"from-a-session"`) {
		t.Errorf("the request log does not name the console's token:\n%s", e.log.String())
	}
	for _, p := range []string{"/api", "/api/v1/nope", "/api/v2/reports"} {
		if r := e.get(p, ""); r.code != 404 || r.h.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s, want the API's JSON 404", p, r.code, r.h.Get("Content-Type"))
		}
	}
	if r := e.get("/healthz", ""); r.code != 200 || contains(string(r.body), "console") {
		t.Errorf("/healthz: %d %s", r.code, r.body)
	}
	// The guards hold for the console: a foreign Host, a cross-site write.
	req, _ := http.NewRequest("GET", e.ts.URL+"/", nil)
	req.Host = "evil.example"
	if resp, err := e.ts.Client().Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("foreign Host: %v %v, want 421", resp, err)
	}
	req, _ = http.NewRequest("POST", e.ts.URL+"/outbox/x/retry", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := e.ts.Client().Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %v %v, want 403", resp, err)
	}

	plain := newEnv(t, false, nil)
	if r := plain.get("/", ""); r.code != 404 {
		t.Errorf("no console: GET / = %d, want 404", r.code)
	}
}

func TestTokensForConsole(t *testing.T) {
	e := newEnv(t, true, nil)
	ts := ParseTokens(e.cfg.HTTP.Tokens, zerolog.Nop())
	if ts.Open() {
		t.Fatal("tokens configured but Open")
	}
	p, ok := ts.Lookup(tokRead)
	if !ok || p.Name != "reader" || !p.Has(ScopeRead) || p.Has(ScopeSubmit) {
		t.Fatalf("Lookup(read token) = %+v %v", p, ok)
	}
	if p.Hash != sha256.Sum256([]byte(tokRead)) {
		t.Error("Principal.Hash is not the sha256 of the value")
	}
	if _, ok := ts.Lookup("wrong"); ok {
		t.Error("a wrong value matched")
	}
	if q, ok := ts.Find(p.Hash); !ok || q.Name != "reader" {
		t.Errorf("Find = %+v %v", q, ok)
	}
	if _, ok := ts.Find(sha256.Sum256([]byte("gone"))); ok {
		t.Error("Find matched an unknown hash")
	}
	a, _ := ts.Lookup(tokAdmin)
	if !a.Has(ScopeRead) {
		t.Error("admin does not imply read")
	}
	if !ParseTokens(nil, zerolog.Nop()).Open() {
		t.Error("no tokens: not Open")
	}
}
