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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	m := &Server{SMTP: freePort(t), API: freePort(t)}
	cmd := exec.Command(bin, "--smtp", m.SMTP, "--listen", m.API, "--database", filepath.Join(t.TempDir(), "mailpit.db"),
		"--disable-version-check", "--smtp-disable-rdns", "--quiet")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + m.API + "/api/v1/messages")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit did not serve its API: %v\n%s", err, logs.String())
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
