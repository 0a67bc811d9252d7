// Package mailpittest runs a real Mailpit on 127.0.0.1 for tests: the
// abuse desk (or smarthost) that the reporter's end-to-end and cluster
// tests deliver to, and whose API tells what arrived.
//
// The binary is $XARFD_MAILPIT when set (scripts/test builds it once);
// otherwise it is built from the module proxy with the Go toolchain into
// the user's cache, at Version.
package mailpittest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xarfd/xarfd/internal/syncbuf"
)

// Version is the Mailpit the tests run; scripts/test pins the same.
const Version = "v1.33.1"

// Binary returns the path of the Mailpit binary, building it when needed.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("XARFD_MAILPIT"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "xarfd-test", "mailpit-"+Version)
	bin := filepath.Join(dir, "mailpit")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building mailpit %s into %s", Version, dir)
	cmd := exec.Command("go", "install", "github.com/axllent/mailpit@"+Version)
	cmd.Dir = os.TempDir() // outside this module
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mailpit: %v\n%s", err, out)
	}
	return bin
}

// Server is a running Mailpit: SMTP and API are its host:port addresses.
type Server struct{ SMTP, API string }

// Start runs a Mailpit with its own database in t.TempDir(), stopped at
// the test's end, and returns once its API answers.
//
// Its two ports are picked free and then handed to Mailpit, so another
// process (a test package running alongside) may take one in between:
// a Mailpit that exits because a port is in use is started again on new
// ports.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	const tries = 5
	for try := 1; ; try++ {
		m, logs, err := start(t, bin, freePort(t), freePort(t))
		if err == nil {
			return m
		}
		if try == tries || !bytes.Contains(logs, []byte("address already in use")) {
			t.Fatalf("mailpit did not serve its API: %v\n%s", err, logs)
		}
		t.Logf("mailpit: a port was taken meanwhile (%v); again on new ports", err)
	}
}

// start runs one Mailpit and waits until its API answers, it exits or 30
// seconds pass; on failure it is stopped and its output returned.
func start(t testing.TB, bin, smtp, api string) (*Server, []byte, error) {
	m := &Server{SMTP: smtp, API: api}
	cmd := exec.Command(bin, "--smtp", m.SMTP, "--listen", m.API, "--database", filepath.Join(t.TempDir(), "mailpit.db"),
		"--disable-version-check", "--smtp-disable-rdns", "--quiet")
	logs := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	// Whatever else may hold the port must not hang the poll.
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + m.API + "/api/v1/messages")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(stop)
				return m, nil, nil
			}
			err = fmt.Errorf("GET /api/v1/messages: %s", resp.Status)
		}
		select {
		case werr := <-exited:
			exited <- werr // for stop
			return nil, []byte(logs.String()), fmt.Errorf("mailpit exited (%v); the API last said: %w", werr, err)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, []byte(logs.String()), err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a 127.0.0.1 address with a port that was free a
// moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
