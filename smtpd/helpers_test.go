package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/syncbuf"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// testConfig is the base every test starts from: an ARF channel, a trap
// domain, and a channel that only 192.0.2.0/24 may feed (the tests connect
// from 127.0.0.1, so it always refuses them).
const testConfig = `
hostname: mx.test.example
sender: {org: Test, contact: abuse@test.example, domain: test.example}
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
  - name: partner
    kind: arf
    addresses: ["partner@test.example"]
    accept_from: {networks: ["192.0.2.0/24"]}
`

type testServer struct {
	addr  string
	store *store.Store
	srv   *Server
	logs  *syncbuf.Buffer
	// txs and ops count the store's durable transactions and the
	// operations they held.
	txs, ops atomic.Int64
}

// startServer runs a real Server on 127.0.0.1:0 over a real store in a
// temporary directory; tweak adjusts the parsed configuration.
func startServer(t testing.TB, tweak func(*config.Config)) *testServer {
	t.Helper()
	return startServerWith(t, testConfig, tweak, nil)
}

// startServerWith starts a server on the configuration yaml; srvTweak,
// when set, adjusts the Server before it serves.
func startServerWith(t testing.TB, yaml string, tweak func(*config.Config), srvTweak func(*Server)) *testServer {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	if tweak != nil {
		tweak(cfg)
	}
	ts := &testServer{logs: &syncbuf.Buffer{}}
	st, err := store.Open(cfg.DataDir, store.Options{OnCommit: func(n int, _ time.Duration) {
		ts.txs.Add(1)
		ts.ops.Add(int64(n))
	}})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, in, zerolog.New(ts.logs), metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	if srvTweak != nil {
		srvTweak(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		st.Close()
	})
	ts.addr, ts.store, ts.srv = l.Addr().String(), st, srv
	return ts
}

// client speaks raw SMTP, byte for byte, so tests can send what a
// well-behaved library would refuse or rewrite (bare LF, NUL, smuggling).
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	return c
}

// reply reads one (possibly multi-line) reply and returns its code and
// the text of its last line.
func (c *client) reply() (int, string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, "read error: " + err.Error()
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			c.t.Fatalf("short reply line %q", line)
		}
		if line[3] == '-' {
			continue
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			c.t.Fatalf("bad reply line %q", line)
		}
		return code, line[4:]
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command line and expects code.
func (c *client) cmd(want int, line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	code, text := c.reply()
	if code != want {
		c.t.Fatalf("%q: got %d %s, want %d", line, code, text, want)
	}
	return text
}

// greet reads the banner and says EHLO.
func (c *client) greet() {
	c.t.Helper()
	if code, text := c.reply(); code != 220 {
		c.t.Fatalf("banner: %d %s", code, text)
	}
	c.cmd(250, "EHLO client.test.example")
}

// message sends a whole transaction whose DATA is body followed by the
// end marker, exactly as given, and returns the final reply.
func (c *client) message(from string, rcpts []string, body string) (int, string) {
	c.t.Helper()
	c.cmd(250, "MAIL FROM:<"+from+">")
	for _, r := range rcpts {
		c.cmd(250, "RCPT TO:<"+r+">")
	}
	c.cmd(354, "DATA")
	c.send(body + "\r\n.\r\n")
	return c.reply()
}

// queuedIDs parses the ids of a 250 "Ok: queued as" reply.
func queuedIDs(t testing.TB, text string) []store.ID {
	t.Helper()
	_, list, ok := strings.Cut(text, "queued as ")
	if !ok {
		t.Fatalf("no ids in reply %q", text)
	}
	var ids []store.ID
	for _, s := range strings.Fields(list) {
		id, err := parseID(s)
		if err != nil {
			t.Fatalf("bad id %q in reply: %v", s, err)
		}
		ids = append(ids, id)
	}
	return ids
}

func parseID(s string) (store.ID, error) {
	var id store.ID
	err := id.UnmarshalText([]byte(s))
	return id, err
}

// sendOK delivers one small message with a well-formed transaction, to
// show that the server still serves after a bad one.
func (ts *testServer) sendOK(t testing.TB) {
	t.Helper()
	c := dial(t, ts.addr)
	c.greet()
	code, text := c.message("sender@origin.example", []string{"fbl@test.example"}, "Subject: ok\r\n\r\nstill serving")
	if code != 250 {
		t.Fatalf("server no longer serves: %d %s", code, text)
	}
	c.cmd(221, "QUIT")
}

func (ts *testServer) count(t testing.TB) int {
	t.Helper()
	n, err := ts.store.Count()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stripAR checks that a stored message starts with our one
// Authentication-Results field, in the message's own line ending, and
// returns what follows it: the message as received.
func stripAR(t testing.TB, raw []byte) []byte {
	t.Helper()
	const prefix = "Authentication-Results: mx.test.example;"
	if !bytes.HasPrefix(raw, []byte(prefix)) {
		t.Fatalf("stored message does not start with %q: %.200q", prefix, raw)
	}
	eol := []byte("\r\n")
	if raw[len(prefix)] == '\n' {
		eol = []byte("\n")
	}
	rest := raw
	for {
		i := bytes.Index(rest, eol)
		if i < 0 {
			t.Fatalf("unterminated Authentication-Results field: %.200q", raw)
		}
		line := rest[:i]
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("mixed line endings in Authentication-Results: %q", line)
		}
		rest = rest[i+len(eol):]
		if len(rest) == 0 || rest[0] != '\t' {
			return rest
		}
	}
}

// TestShutdownBeforeServe: a Shutdown that comes before Serve has
// started (a signal at start-up, a test that ends at once) must still
// stop it. go-smtp closes only the listeners its Serve has registered, so
// a later Serve used to accept for ever and Shutdown's caller waited on
// it for ever.
func TestShutdownBeforeServe(t *testing.T) {
	cfg, err := config.Parse([]byte(testConfig), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	st, err := store.Open(cfg.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, in, zerolog.Nop(), metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		l.Close()
		t.Fatal("Serve after Shutdown still accepting after 10 s")
	}
}
