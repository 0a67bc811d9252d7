package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// listenNotify is a stand-in for systemd's notification socket.
func listenNotify(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readDatagram(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4096)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(b[:n])
}

func TestNotifyPathAndAbstractSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	abstract := "xarfd-test-" + strconv.Itoa(os.Getpid())
	for _, tc := range []struct{ env, listen string }{
		{path, path},
		{"@" + abstract, "\x00" + abstract},
	} {
		c := listenNotify(t, tc.listen)
		t.Setenv("NOTIFY_SOCKET", tc.env)
		n := newNotifier(zerolog.Nop())
		n.Notify("READY=1\nSTATUS=ok")
		if got := readDatagram(t, c); got != "READY=1\nSTATUS=ok" {
			t.Errorf("NOTIFY_SOCKET=%q: got %q", tc.env, got)
		}
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier(zerolog.Nop())
	if n != nil {
		t.Fatalf("notifier without NOTIFY_SOCKET: %+v", n)
	}
	n.Notify("READY=1") // must not panic
	n.Watchdog(context.Background(), nil)
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listenNotify(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := newNotifier(zerolog.Nop())
	if n.watchdog != 10*time.Millisecond {
		t.Fatalf("watchdog interval %v, want half of WATCHDOG_USEC", n.watchdog)
	}
	// The first check passes, every later one fails.
	called := make(chan int, 100)
	i := 0
	healthy := func() error {
		i++
		called <- i
		if i > 1 {
			return errors.New("store gone")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Watchdog(ctx, healthy)
	}()
	for range 3 { // checks 1 and 2 have sent whatever they send
		<-called
	}
	cancel()
	<-done
	if got := readDatagram(t, c); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
	// Anything sent is queued by now; a past deadline would not even look.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	b := make([]byte, 64)
	if n, err := c.Read(b); err == nil {
		t.Fatalf("ping %q sent after a failed check", b[:n])
	}
}

func TestWatchdogForAnotherProcessIsIgnored(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "notify"))
	t.Setenv("WATCHDOG_USEC", "20000")
	t.Setenv("WATCHDOG_PID", "1")
	if n := newNotifier(zerolog.Nop()); n.watchdog != 0 {
		t.Fatalf("watchdog %v for WATCHDOG_PID=1", n.watchdog)
	}
}
