package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.etcd.io/bbolt"
)

// serve starts a baseline server with backend on 127.0.0.1:0 and returns
// its address; it is closed when the test ends.
func serve(t *testing.T, backend smtp.Backend) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := baselineServer(backend)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return l.Addr().String()
}

func TestLoadDiscard(t *testing.T) {
	addr := serve(t, smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }))
	r, err := load([]string{addr}, "a@origin.example", "x@trap.localhost", 40, 4, [][]byte{message(2048)})
	if err != nil {
		t.Fatal(err)
	}
	if r.sent != 40 || r.errors != 0 || len(r.lat) != 40 {
		t.Fatalf("sent %d, errors %d (%v), %d latencies; want 40, 0, 40", r.sent, r.errors, r.firstErr, len(r.lat))
	}
	if r.pct(50) <= 0 || r.pct(99) < r.pct(50) {
		t.Errorf("p50 %v, p99 %v", r.pct(50), r.pct(99))
	}
}

// A list of addresses spreads the sessions over the servers, round
// robin.
func TestLoadSpreadsSessions(t *testing.T) {
	var sessions [3]atomic.Int64
	var addrs []string
	for i := range sessions {
		addrs = append(addrs, serve(t, smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
			sessions[i].Add(1)
			return discardSession{}, nil
		})))
	}
	r, err := load(addrs, "a@origin.example", "x@trap.localhost", 60, 6, [][]byte{message(1024)})
	if err != nil {
		t.Fatal(err)
	}
	if r.sent != 60 || r.errors != 0 {
		t.Fatalf("sent %d, errors %d (%v)", r.sent, r.errors, r.firstErr)
	}
	for i := range sessions {
		if n := sessions[i].Load(); n != 2 {
			t.Errorf("server %d had %d sessions, want 2 of 6", i, n)
		}
	}
	if _, err := load([]string{addrs[0], ""}, "a@origin.example", "x@trap.localhost", 60, 6, [][]byte{message(1024)}); err == nil {
		t.Error("an empty address in the list was taken")
	}
}

// Every message the bbolt baseline answered 250 for is in its file,
// byte for byte.
func TestLoadBaselineStoresEveryMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "baseline.db")
	b, err := openBaseline(path)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return b.session(), nil }))
	msg := message(3000)
	r, err := load([]string{addr}, "a@origin.example", "x@trap.localhost", 60, 8, [][]byte{msg})
	if err != nil {
		t.Fatal(err)
	}
	if r.sent != 60 || r.errors != 0 {
		t.Fatalf("sent %d, errors %d (%v)", r.sent, r.errors, r.firstErr)
	}
	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	// After close a session is told to retry, not left waiting.
	if err := b.store([]byte("k"), []byte("v")); err == nil {
		t.Error("store after close succeeded")
	}

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(baselineBucket).ForEach(func(k, v []byte) error {
			n++
			if len(k) != 16 || !bytes.Equal(v, msg) {
				t.Errorf("key %x: %d bytes, want a 16-byte id and the %d bytes sent", k, len(v), len(msg))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 60 {
		t.Errorf("%d messages stored, want 60", n)
	}
}

// The baseline never overwrites a file: the path might be someone's
// database.
func TestBaselineKeepsExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xarfd.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := openBaseline(path); err == nil {
		b.close()
		t.Fatal("openBaseline over an existing file succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "precious" {
		t.Errorf("file now holds %q", got)
	}
}

func TestMessageSize(t *testing.T) {
	for _, size := range []int{200, 2048, 20480} {
		if m := message(size); len(m) != size || !bytes.HasSuffix(m, []byte("\r\n")) {
			t.Errorf("message(%d) is %d bytes", size, len(m))
		}
	}
}

// procCPU reads this process's CPU time: it grows while the process
// computes.
func TestProcCPU(t *testing.T) {
	t0, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for t1 := t0; t1-t0 < 30*time.Millisecond; {
		for i := range 1 << 20 {
			x += i
		}
		if t1, err = procCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := procCPU(-1); err == nil {
		t.Error("procCPU of no process succeeded")
	}
	_ = x
}

func TestGeneratedReportPath(t *testing.T) {
	msgs, err := generated("arf", 2048, "fbl@localhost", "user@isp.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 64 || bytes.Equal(msgs[0], msgs[1]) || !bytes.Contains(msgs[0], []byte("Original-Rcpt-To: <user@isp.example>")) {
		t.Fatalf("%d messages, first %q", len(msgs), msgs[0][:200])
	}
	msgs, err = generated("trap", 2048, "x@trap.localhost", "user@isp.example")
	if err != nil || !bytes.Contains(msgs[0], []byte("To: x@trap.localhost")) {
		t.Fatalf("trap: %v", err)
	}
	if _, err := generated("plain", 2048, "x@trap.localhost", ""); err == nil {
		t.Error("unknown kind accepted")
	}
}
