package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// trapBody is a message the trap channel turns into a report.
func trapBody(marker string) []byte {
	return []byte("Received: from spam.example (spam.example [198.51.100.23]) by mx.other.example; Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
		"From: spammer@spam.example\r\nTo: victim@trap.test.example\r\nSubject: buy\r\nMessage-ID: <" + marker + "@spam.example>\r\n\r\n" + marker + "\r\n")
}

// send does one request with extra headers and returns the reply.
func (e *env) send(method, path, host string, hdr map[string]string, body io.Reader) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func TestHostHeader(t *testing.T) {
	e := newEnv(t, false, nil)
	e.cfg.HTTP.Hostnames = []string{"xarfd.test.example"}
	for host, want := range map[string]int{
		"127.0.0.1:8025":          200,
		"127.0.0.2":               200, // loopback
		"[::1]:8025":              200,
		"localhost:8025":          200,
		"LOCALHOST.":              200,
		"xarfd.test.example":      200,
		"XARFD.test.example:9000": 200, // the port is not compared
		"evil.example":            421, // DNS rebinding: a name resolving to 127.0.0.1
		"evil.example:8025":       421,
		"localhost.evil.example":  421,
		"192.0.2.1":               421, // neither loopback nor this connection's address
		"xarfd.test.example.evil": 421,
	} {
		for _, path := range []string{"/healthz", "/metrics", "/api/v1/reports"} {
			r := e.send("GET", path, host, nil, nil)
			if r.code != want {
				t.Errorf("Host %q %s: %d, want %d", host, path, r.code, want)
			}
			if want == 421 && (r.h.Get("Content-Type") != "application/json" || strings.Contains(string(r.body), "evil")) {
				t.Errorf("Host %q: %q %s: want a JSON error that does not echo the Host", host, r.h.Get("Content-Type"), r.body)
			}
		}
	}
}

func TestWritesNeedTheirContentType(t *testing.T) {
	e := newEnv(t, false, nil)
	msgPath, repPath := "/api/v1/channels/plain/messages", "/api/v1/channels/fbl/reports"
	for _, c := range []struct {
		path, ctype string
		body        []byte
		want        int
	}{
		{msgPath, "", trapBody("a"), 415},
		{msgPath, "text/plain", trapBody("a"), 415},
		{msgPath, "application/x-www-form-urlencoded", trapBody("a"), 415},
		{msgPath, "multipart/form-data; boundary=x", trapBody("a"), 415},
		{msgPath, "application/json", trapBody("a"), 415},
		{repPath, "", []byte(xarfDoc), 415},
		{repPath, "text/plain", []byte(xarfDoc), 415},
		{repPath, "message/rfc822", []byte(xarfDoc), 415},
		{msgPath, "message/rfc822", trapBody("a"), 202},
		{msgPath, "Message/RFC822; charset=utf-8", trapBody("b"), 202},
		{repPath, "application/json", []byte(xarfDoc), 202},
	} {
		hdr := map[string]string{}
		if c.ctype != "" {
			hdr["Content-Type"] = c.ctype
		}
		if r := e.send("POST", c.path, "", hdr, bytes.NewReader(c.body)); r.code != c.want {
			t.Errorf("POST %s as %q: %d %s, want %d", c.path, c.ctype, r.code, r.body, c.want)
		}
	}
	if n, _ := e.st.Count(); n != 2 {
		t.Errorf("%d messages stored, want the 2 with the right type", n)
	}
}

// A browser page of another site posting to the API, with the headers a
// browser adds; the same request from curl (no such headers) passes.
func TestCrossSiteWritesRefused(t *testing.T) {
	e := newEnv(t, false, nil)
	self := strings.TrimPrefix(e.ts.URL, "http://")
	path := "/api/v1/channels/plain/messages"
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site fetch", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"old browser, foreign Origin", map[string]string{"Origin": "http://evil.example"}, 403},
		{"old browser, null Origin", map[string]string{"Origin": "null"}, 403},
		{"foreign Origin, same-origin claim ignored", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}, 202},
		{"same-origin fetch (the console)", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://" + self}, 202},
		{"matching Origin", map[string]string{"Origin": "http://" + self}, 202},
		{"typed in the address bar", map[string]string{"Sec-Fetch-Site": "none"}, 202},
		{"curl", map[string]string{}, 202},
	} {
		c.hdr["Content-Type"] = "message/rfc822"
		r := e.send("POST", path, "", c.hdr, bytes.NewReader(trapBody(c.name)))
		if r.code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, r.code, r.body, c.want)
		}
	}
	// Reads are not refused: a cross-site page cannot read the answer.
	if r := e.send("GET", "/healthz", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, nil); r.code != 200 {
		t.Errorf("cross-site GET: %d", r.code)
	}
	if n, _ := e.st.Count(); n != 5 {
		t.Errorf("%d messages stored, want the 5 accepted", n)
	}
}

// onlyReader hides Len, so the client sends the body chunked.
type onlyReader struct{ io.Reader }

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, false, nil)
	e.cfg.HTTP.MaxBodyBytes = 2048 // below smtp.max_message_bytes (4096)
	big := append(trapBody("big"), bytes.Repeat([]byte("x"), 3000)...)
	for name, body := range map[string]io.Reader{
		"with Content-Length": bytes.NewReader(big),
		"chunked":             onlyReader{bytes.NewReader(big)},
	} {
		for _, c := range []struct{ path, ctype string }{
			{"/api/v1/channels/plain/messages", "message/rfc822"},
			{"/api/v1/channels/fbl/reports", "application/json"},
		} {
			if name == "chunked" {
				body = onlyReader{bytes.NewReader(big)}
			} else {
				body = bytes.NewReader(big)
			}
			r := e.send("POST", c.path, "", map[string]string{"Content-Type": c.ctype}, body)
			if r.code != 413 || r.h.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: %d %q %s, want a JSON 413", name, c.path, r.code, r.h.Get("Content-Type"), r.body)
			}
		}
	}
	small := trapBody("small")
	if r := e.send("POST", "/api/v1/channels/plain/messages", "", map[string]string{"Content-Type": "message/rfc822"}, onlyReader{bytes.NewReader(small)}); r.code != 202 {
		t.Errorf("chunked body under the limit: %d %s", r.code, r.body)
	}
	if n, _ := e.st.Count(); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

func TestReadAtMost(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB: several chunks
	for _, size := range []int64{int64(len(data)), -1} {
		got, err := readAtMost(bytes.NewReader(data), size, 2<<20)
		if err != nil || !bytes.Equal(got, data) || int64(cap(got)) > int64(len(data))+1 {
			t.Errorf("size %d: %d bytes (cap %d), %v", size, len(got), cap(got), err)
		}
	}
	if _, err := readAtMost(bytes.NewReader(data), -1, 500_000); err != errBodyTooLarge {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := readAtMost(bytes.NewReader(data[:10]), 20, 100); err == nil {
		t.Error("a body shorter than announced was accepted")
	}
	if _, err := readAtMost(bytes.NewReader(data[:30]), 20, 100); err == nil {
		t.Error("a body longer than announced was accepted")
	}
}

// /healthz follows the store's commits: 503 with a generic reason while
// they fail, 200 again by itself once the disk is back.
func TestHealthzWhileStoreCannotCommit(t *testing.T) {
	var full atomic.Bool
	e := newEnvStore(t, false, func(o *store.Options, _ *metrics.Metrics) {
		o.ProbeInterval = 10 * time.Millisecond
		o.FaultCommit = func() error {
			if full.Load() {
				return &os.PathError{Op: "write", Path: "/var/lib/secret/xarfd.db", Err: syscall.ENOSPC}
			}
			return nil
		}
	}, nil)
	if r := e.get("/healthz", ""); r.code != 200 {
		t.Fatalf("healthy store: %d %s", r.code, r.body)
	}
	full.Store(true)
	r := e.send("POST", "/api/v1/channels/plain/messages", "", map[string]string{"Content-Type": "message/rfc822"}, bytes.NewReader(trapBody("x")))
	if r.code != 503 || r.h.Get("Retry-After") == "" || strings.Contains(string(r.body), "secret") {
		t.Errorf("submission on a full disk: %d %s, want a 503 with Retry-After", r.code, r.body)
	}
	r = e.get("/healthz", "")
	var h healthBody
	r.json(t, &h)
	if r.code != 503 || h.Status != "unavailable" || h.Reason != "store cannot commit: disk full" || h.Since == nil || strings.Contains(string(r.body), "secret") {
		t.Errorf("healthz on a full disk: %d %s", r.code, r.body)
	}
	full.Store(false)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if r := e.get("/healthz", ""); r.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz did not recover: %s", e.get("/healthz", "").body)
		}
	}
}

// A flipped byte in a stored message: the API answers 500 with a generic
// message and never the bytes; the log names the id; the metric counts.
func TestDamagedRecordAnswers500(t *testing.T) {
	e := newEnvStore(t, false, func(o *store.Options, m *metrics.Metrics) {
		o.OnDamage = func(store.ID) { m.StoreDamaged() }
	}, nil)
	marker := "DAMAGEMARKER"
	r := e.send("POST", "/api/v1/channels/plain/messages", "", map[string]string{"Content-Type": "message/rfc822"}, bytes.NewReader(trapBody(marker)))
	if r.code != 202 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var res struct{ ID string }
	r.json(t, &res)
	if r := e.get("/api/v1/reports/"+res.ID+"/evidence", ""); r.code != 200 || !bytes.Contains(r.body, []byte(marker)) {
		t.Fatalf("evidence before the damage: %d", r.code)
	}
	// Damage the file under the running store, as a failing disk would:
	// in place, through the file, which the store's map shows.
	b, err := os.ReadFile(e.st.Path())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(e.st.Path(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(marker))
		if j < 0 {
			break
		}
		if _, err := f.WriteAt([]byte("d"), int64(i+j)); err != nil {
			t.Fatal(err)
		}
		i += j + len(marker)
	}
	f.Close()
	for _, path := range []string{"/api/v1/reports/" + res.ID + "/evidence", "/api/v1/reports/" + res.ID, "/api/v1/reports"} {
		r := e.get(path, "")
		if r.code != 500 || bytes.Contains(bytes.ToLower(r.body), []byte("amagemarker")) || !strings.Contains(string(r.body), `"stored data is damaged and cannot be served"`) {
			t.Errorf("%s: %d %s, want a generic 500", path, r.code, r.body)
		}
	}
	if !strings.Contains(e.log.String(), res.ID) {
		t.Errorf("the log does not name the damaged record %s:\n%s", res.ID, e.log.String())
	}
	var n float64
	for _, line := range strings.Split(string(e.get("/metrics", "").body), "\n") {
		if v, ok := strings.CutPrefix(line, "xarfd_store_damaged_records_total "); ok {
			fmt.Sscan(v, &n)
		}
	}
	if n != 3 {
		t.Errorf("xarfd_store_damaged_records_total = %v, want 3", n)
	}
}

// The Host check parses what any client sends: it never panics, and a
// name it lets through is one it knows.
func FuzzHostAllowed(f *testing.F) {
	for _, h := range []string{"127.0.0.1:8025", "[::1]", "localhost", "xarfd.test.example.", "evil.example:80", "[", ":", "[::ffff:127.0.0.1]:1", "%zz"} {
		f.Add(h)
	}
	s := &Server{}
	s.view.Store(&view{cfg: &config.Config{HTTP: config.HTTP{Listen: "127.0.0.1:8025", Hostnames: []string{"xarfd.test.example"}}}})
	f.Fuzz(func(t *testing.T, host string) {
		r := httptest.NewRequest("GET", "/healthz", nil)
		r.Host = host
		if !s.hostAllowed(r) || host == "" {
			return
		}
		h := host
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		h = strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
		if _, err := netip.ParseAddr(h); err == nil {
			return
		}
		if h != "localhost" && h != "xarfd.test.example" {
			t.Fatalf("Host %q let through", host)
		}
	})
}
