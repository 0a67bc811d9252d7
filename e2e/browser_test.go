package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
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
	defer srv.Close()

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
