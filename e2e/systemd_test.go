package e2e

import (
	"bufio"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xarfd/xarfd/internal/syncbuf"
)

// notifySocket is a stand-in for systemd's $NOTIFY_SOCKET.
type notifySocket struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func listenNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{t: t, conn: c, path: path}
}

// next returns the next datagram that is not a watchdog ping, as a map.
func (n *notifySocket) next() map[string]string {
	n.t.Helper()
	for {
		n.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		b := make([]byte, 4096)
		k, err := n.conn.Read(b)
		if err != nil {
			n.t.Fatalf("waiting for a notification: %v", err)
		}
		kv := map[string]string{}
		for _, line := range strings.Split(string(b[:k]), "\n") {
			key, v, ok := strings.Cut(line, "=")
			if !ok {
				n.t.Fatalf("notification line %q is not KEY=value", line)
			}
			kv[key] = v
		}
		if kv["WATCHDOG"] == "1" {
			continue
		}
		return kv
	}
}

// TestSystemdNotify runs the daemon as systemd would with Type=notify
// and WatchdogSec: READY=1 must come only when SMTP and HTTP accept
// connections (the test connects the moment it arrives, without
// waiting for any log line), WATCHDOG=1 while it runs, STOPPING=1 on
// SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, baseConfig)
	ns := listenNotifySocket(t)
	cmd := exec.Command(binary, "serve", "-config", cfg)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=200000")
	logs := &syncbuf.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(logs.String(), 40))
		}
	})

	ready := ns.next()
	if ready["READY"] != "1" {
		t.Fatalf("first notification %v, want READY=1", ready)
	}
	// STATUS=serving: smtp 127.0.0.1:N, http 127.0.0.1:M
	var smtpAddr, httpAddr string
	status, _ := strings.CutPrefix(ready["STATUS"], "serving: ")
	for _, f := range strings.Split(status, ", ") {
		if a, ok := strings.CutPrefix(f, "smtp "); ok {
			smtpAddr = a
		} else if a, ok := strings.CutPrefix(f, "http "); ok {
			httpAddr = a
		}
	}
	if smtpAddr == "" || httpAddr == "" {
		t.Fatalf("READY's STATUS %q does not name the listeners", ready["STATUS"])
	}
	c, err := net.Dial("tcp", smtpAddr)
	if err != nil {
		t.Fatalf("READY=1 sent, but SMTP %s refuses connections: %v", smtpAddr, err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("SMTP greeting after READY=1: %q, %v", greeting, err)
	}
	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		t.Fatalf("READY=1 sent, but HTTP %s fails: %v", httpAddr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz after READY=1: %s", resp.Status)
	}

	// Watchdog pings at half of WATCHDOG_USEC; wait for two of them.
	pings := 0
	for pings < 2 {
		ns.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		b := make([]byte, 512)
		k, err := ns.conn.Read(b)
		if err != nil {
			t.Fatalf("no watchdog ping: %v", err)
		}
		if string(b[:k]) != "WATCHDOG=1" {
			t.Fatalf("unexpected notification %q while running", b[:k])
		}
		pings++
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if got := ns.next(); got["STOPPING"] != "1" {
		t.Fatalf("after SIGTERM: %v, want STOPPING=1", got)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("no exit within 40s of SIGTERM")
	}
}
