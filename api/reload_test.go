package api

import (
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

// TestReload swaps channels and tokens: a revoked token stops working,
// a new one works, a removed channel is unknown and a new one takes
// submissions.
func TestReload(t *testing.T) {
	e := newEnv(t, true, nil)
	if r := e.get("/api/v1/reports", tokRead); r.code != 200 {
		t.Fatalf("before reload: %d %s", r.code, r.body)
	}
	y := testYAML(t.TempDir(), true)
	y = strings.Replace(y, `    - {name: reader, sha256: "`+sha(tokRead)+`", scopes: [read]}`,
		`    - {name: reader2, sha256: "`+sha("new-read-token-0123")+`", scopes: [read]}`, 1)
	y = strings.Replace(y, "  - name: fbl\n    kind: arf\n    addresses: [\"fbl@test.example\"]\n",
		"  - name: fresh\n    kind: arf\n    addresses: [\"fresh@test.example\"]\n", 1)
	cfg, err := config.Parse([]byte(y), "next.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, e.st, ingest.Options{Validator: fakeValidator{}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Reload(cfg, in)

	if r := e.get("/api/v1/reports", tokRead); r.code != 401 {
		t.Errorf("revoked token: %d, want 401", r.code)
	}
	if r := e.get("/api/v1/reports", "new-read-token-0123"); r.code != 200 {
		t.Errorf("new token: %d %s", r.code, r.body)
	}
	msg := []byte("From: a@origin.example\r\nSubject: x\r\n\r\nbody\r\n")
	if r := e.do("POST", "/api/v1/channels/fbl/messages", tokSubmitAll, "message/rfc822", msg); r.code != 404 {
		t.Errorf("removed channel: %d, want 404", r.code)
	}
	if r := e.do("POST", "/api/v1/channels/fresh/messages", tokSubmitAll, "message/rfc822", msg); r.code != 202 {
		t.Errorf("new channel: %d %s", r.code, r.body)
	}
}

// TestHealthzLoggedAtDebug keeps probes out of the info log.
func TestHealthzLoggedAtDebug(t *testing.T) {
	e := newEnv(t, false, nil)
	if r := e.get("/healthz", ""); r.code != 200 {
		t.Fatalf("healthz: %d", r.code)
	}
	e.get("/api/v1/reports", "")
	var probe, other string
	for _, l := range strings.Split(e.log.String(), "\n") {
		switch {
		case strings.Contains(l, `"path":"/healthz"`):
			probe = l
		case strings.Contains(l, `"path":"/api/v1/reports"`):
			other = l
		}
	}
	if !strings.Contains(probe, `"level":"debug"`) || !strings.Contains(other, `"level":"info"`) {
		t.Errorf("want the probe at debug and the query at info:\n%s\n%s", probe, other)
	}
}

// TestReloadReachesChannelsAndGuards: after a reload, GET
// /api/v1/channels lists the new channels as configured and a removed
// one as orphaned, and http.hostnames and http.max_body_bytes of the new
// file apply (not the values the server started with).
func TestReloadReachesChannelsAndGuards(t *testing.T) {
	e := newEnv(t, true, nil)
	if err := e.st.Put([]store.Entry{{Report: report(idAt(time.Now().Add(-time.Hour)), "fbl", "198.51.100.1")}}); err != nil {
		t.Fatal(err)
	}
	y := testYAML(t.TempDir(), true)
	y = strings.Replace(y, "  - name: fbl\n    kind: arf\n    addresses: [\"fbl@test.example\"]\n",
		"  - name: fresh\n    kind: arf\n    addresses: [\"fresh@test.example\"]\n", 1)
	y = strings.Replace(y, "  listen: \"127.0.0.1:0\"\n", "  listen: \"127.0.0.1:0\"\n  hostnames: [xarfd.test.example]\n  max_body_bytes: 1024\n", 1)
	cfg, err := config.Parse([]byte(y), "next.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, e.st, ingest.Options{Validator: fakeValidator{}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Reload(cfg, in)

	var body struct {
		Channels []channelInfo `json:"channels"`
	}
	r := e.get("/api/v1/channels", tokRead)
	r.json(t, &body)
	got := map[string]channelInfo{}
	for _, c := range body.Channels {
		got[c.Name] = c
	}
	if c := got["fresh"]; r.code != 200 || !c.Configured || c.Orphaned {
		t.Errorf("new channel: %d %+v\n%s", r.code, c, r.body)
	}
	if c := got["fbl"]; !c.Orphaned || c.Configured || c.Records != 1 {
		t.Errorf("removed channel with data: %+v\n%s", c, r.body)
	}
	if r := e.send("GET", "/healthz", "xarfd.test.example", nil, nil); r.code != 200 {
		t.Errorf("Host of the reloaded http.hostnames: %d %s", r.code, r.body)
	}
	big := strings.Repeat("x", 2000)
	if r := e.do("POST", "/api/v1/channels/fresh/messages?rcpt=fresh@test.example", tokSubmitAll, "message/rfc822", []byte("Subject: x\r\n\r\n"+big)); r.code != 413 {
		t.Errorf("body over the reloaded http.max_body_bytes: %d %s", r.code, r.body)
	}
}
