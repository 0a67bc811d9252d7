package api

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/syncbuf"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
)

// Tokens of the test configuration (the config holds their sha256).
const (
	tokRead      = "read-token-0123456789"
	tokSubmit    = "submit-token-plain-only"
	tokSubmitAll = "submit-token-all-channels"
	tokAdmin     = "admin-token-0123456789"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func testYAML(dataDir string, tokens bool) string {
	y := fmt.Sprintf(`
hostname: mx.test.example
data_dir: %s
sender: {org: Test, contact: abuse@test.example, domain: test.example}
smtp: {listen: ["127.0.0.1:0"], max_message_bytes: 4096, max_recipients: 5}
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@test.example"]
  - name: trap
    kind: trap
    addresses: ["*@trap.test.example"]
    redact: {recipients: true}
  - name: plain
    kind: trap
    addresses: ["*@plain.test.example"]
`, dataDir)
	if tokens {
		y += fmt.Sprintf(`
http:
  listen: "127.0.0.1:0"
  tokens:
    - {name: reader, sha256: %q, scopes: [read]}
    - {name: submitter, sha256: %q, scopes: [submit], channels: [plain]}
    - {name: feeder, sha256: %q, scopes: [submit]}
    - {name: admin, sha256: %q, scopes: [admin]}
`, sha(tokRead), sha(tokSubmit), sha(tokSubmitAll), sha(tokAdmin))
	}
	return y
}

// fakeValidator stands in for the XARF schema: a document must be an
// object with xarf_version 4.2.0 and a category.
type fakeValidator struct{}

func (fakeValidator) Validate(doc []byte) []string {
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		return []string{"not JSON"}
	}
	var r []string
	if d["xarf_version"] != "4.2.0" {
		r = append(r, "xarf_version: want 4.2.0")
	}
	if _, ok := d["category"].(string); !ok {
		r = append(r, "category: required")
	}
	return r
}

type env struct {
	t   *testing.T
	st  *store.Store
	in  *ingest.Ingester
	srv *Server
	ts  *httptest.Server
	hub *Hub
	m   *metrics.Metrics
	log *syncbuf.Buffer
	cfg *config.Config
}

// newEnv starts the API over a real store and ingester in a temporary
// directory, behind a real HTTP server.
func newEnv(t *testing.T, tokens bool, tune func(*Options)) *env {
	t.Helper()
	return newEnvStore(t, tokens, nil, tune)
}

// newEnvStore is newEnv with the store's options set by so (nil: the
// defaults); so may use the env's metrics.
func newEnvStore(t *testing.T, tokens bool, so func(*store.Options, *metrics.Metrics), tune func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(testYAML(dir, tokens)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	var st *store.Store
	if so == nil {
		st = storetest.Open(t, dir)
	} else {
		var o store.Options
		so(&o, m)
		if st, err = store.Open(dir, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
	}
	e := &env{t: t, st: st, m: m, log: &syncbuf.Buffer{}, cfg: cfg}
	e.hub = NewHub(e.m)
	e.in, err = ingest.New(cfg, st, ingest.Options{Metrics: e.m, OnReport: e.hub.Publish, Validator: fakeValidator{}})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Config: cfg, Store: st, Ingester: e.in, Metrics: e.m, Hub: e.hub, Logger: zerolog.New(e.log)}
	if tune != nil {
		tune(&o)
	}
	e.srv = New(o)
	e.ts = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.ts.Close)
	return e
}

type reply struct {
	code int
	h    http.Header
	body []byte
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("reply %d is not JSON: %v\n%s", r.code, err, r.body)
	}
}

func (e *env) do(method, path, token, contentType string, body []byte) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func (e *env) get(path, token string) reply { return e.do("GET", path, token, "", nil) }

// idAt returns a fresh UUIDv7-shaped id whose time is t.
func idAt(t time.Time) store.ID {
	var id store.ID
	rand.Read(id[:])
	ms := uint64(t.UnixMilli())
	for i := 0; i < 6; i++ {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	return id
}

// report builds a stored report with a small XARF-like document.
func report(id store.ID, channel, ip string) *store.Report {
	doc := fmt.Sprintf(`{"xarf_version": "4.2.0", "report_id": %q, "category": "messaging", "source_identifier": %q}`, id, ip)
	r := &store.Report{ID: id, Channel: channel, Via: "smtp", XARF: json.RawMessage(doc)}
	if a, err := netip.ParseAddr(ip); err == nil {
		r.SourceIP = a
	}
	return r
}

// reportIDs pulls report_id out of every document of a listing.
func reportIDs(t *testing.T, docs []json.RawMessage) []string {
	t.Helper()
	var ids []string
	for _, d := range docs {
		var v struct {
			ReportID string `json:"report_id"`
		}
		if err := json.Unmarshal(d, &v); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.ReportID)
	}
	return ids
}

type listing struct {
	Reports    []json.RawMessage `json:"reports"`
	NextCursor string            `json:"next_cursor"`
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
