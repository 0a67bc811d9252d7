package smtpd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/config"
)

func TestBudgetAcquireRelease(t *testing.T) {
	b := newBudget(100)
	if !b.acquire(60, 0) || !b.acquire(40, 0) {
		t.Fatal("acquire within the budget failed")
	}
	if b.acquire(1, 0) {
		t.Fatal("acquire beyond the budget succeeded")
	}
	if b.acquire(101, time.Hour) {
		t.Fatal("a request larger than the whole budget must fail at once")
	}
	// A waiter gets its bytes when another session gives some back.
	got := make(chan bool)
	go func() { got <- b.acquire(30, time.Minute) }()
	b.release(40)
	if !<-got {
		t.Fatal("waiter did not get the released bytes")
	}
	if n := b.inUse(); n != 90 {
		t.Fatalf("in use %d, want 90", n)
	}
	b.release(90)
	if n := b.inUse(); n != 0 {
		t.Fatalf("in use %d after releasing all, want 0", n)
	}
	b.release(1)
	if b.inUse() != 0 || b.errors() != 1 {
		t.Errorf("releasing more than acquired: in use %d, errors %d; want 0 and 1", b.inUse(), b.errors())
	}
}

func TestBudgetWaitGivesUp(t *testing.T) {
	b := newBudget(10)
	b.acquire(10, 0)
	if b.acquire(1, 20*time.Millisecond) {
		t.Fatal("acquire succeeded with the budget full")
	}
	if n := b.inUse(); n != 10 {
		t.Fatalf("a failed acquire changed the count: %d", n)
	}
}

func TestReservationGrowAndRelease(t *testing.T) {
	b := newBudget(100)
	r := reservation{b: b}
	if !r.grow(30, 0) || !r.grow(20, 0) || !r.grow(70, 0) {
		t.Fatal("grow failed")
	}
	if r.held != 70 || b.inUse() != 70 {
		t.Fatalf("held %d, in use %d, want 70", r.held, b.inUse())
	}
	if r.grow(101, 0) {
		t.Fatal("grow beyond the budget succeeded")
	}
	r.releaseAll()
	r.releaseAll()
	if b.inUse() != 0 {
		t.Fatalf("in use %d after releaseAll twice", b.inUse())
	}
}

func TestInflightBudgetDerived(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	meminfo := write("meminfo", "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
	v2 := write("cgroup-v2", "0::/svc/xarfd\n")
	write("root/svc/xarfd/memory.max", "1073741824\n")
	v2max := write("cgroup-v2max", "0::/unlimited\n")
	write("root/unlimited/memory.max", "max\n")
	v1 := write("cgroup-v1", "5:cpu:/\n4:memory:/docker/abc\n0::/\n")
	write("root/memory/docker/abc/memory.limit_in_bytes", "2147483648\n")
	v1none := write("cgroup-v1none", "4:memory:/free\n")
	write("root/memory/free/memory.limit_in_bytes", "9223372036854771712\n")

	cfg := &config.Config{SMTP: config.SMTP{MaxMessageBytes: 25 << 20}}
	for _, tc := range []struct {
		name, cgroup, meminfo string
		want                  int64
	}{
		{"v2 limit below MemAvailable", v2, meminfo, 1 << 30 / config.InflightMemoryDivisor},
		{"v2 max: MemAvailable", v2max, meminfo, 8000000 << 10 / config.InflightMemoryDivisor},
		{"v1 limit", v1, meminfo, 2 << 30 / config.InflightMemoryDivisor},
		{"v1 no limit", v1none, meminfo, 8000000 << 10 / config.InflightMemoryDivisor},
		{"nothing readable: floor", filepath.Join(dir, "none"), filepath.Join(dir, "none"), config.MinInflightBytes},
	} {
		got, from := inflightBudget(cfg, memorySources{procCgroup: tc.cgroup, cgroupRoot: filepath.Join(dir, "root"), meminfo: tc.meminfo})
		if got != tc.want {
			t.Errorf("%s: %d (from %s), want %d", tc.name, got, from, tc.want)
		}
	}
	small := write("meminfo-small", "MemAvailable:    100000 kB\n")
	if got, from := inflightBudget(cfg, memorySources{procCgroup: v2max, cgroupRoot: filepath.Join(dir, "root"), meminfo: small}); got != config.MinInflightBytes || from != "floor" {
		t.Errorf("small machine: %d from %s, want the floor", got, from)
	}
	big := &config.Config{SMTP: config.SMTP{MaxMessageBytes: 1 << 30}}
	if got, _ := inflightBudget(big, memorySources{procCgroup: v2max, cgroupRoot: filepath.Join(dir, "root"), meminfo: small}); got != 1<<30 {
		t.Errorf("budget %d below max_message_bytes", got)
	}
	set := &config.Config{SMTP: config.SMTP{MaxMessageBytes: 1 << 20, MaxInflightBytes: 5 << 20}}
	if got, from := inflightBudget(set, memorySources{}); got != 5<<20 || from != "smtp.max_inflight_bytes" {
		t.Errorf("configured budget: %d from %s", got, from)
	}
}

// TestInflightBudgetOverSMTP drives the budget with real go-smtp clients:
// a budget of two messages, three clients each holding a message in
// DATA. The third waits, then gets 452 4.3.1; once the first two are
// stored the bytes are back and the next message gets 250.
func TestInflightBudgetOverSMTP(t *testing.T) {
	const msgSize = 3 << 20
	ts := startServerWith(t, testConfig, func(c *config.Config) {
		c.SMTP.MaxMessageBytes = 4 << 20
		c.SMTP.MaxInflightBytes = 2*msgSize + 2*reserveStep
	}, func(s *Server) { s.lim.Load().inflightWait = 300 * time.Millisecond })
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"), msgSize/66)
	msg := append([]byte("Subject: big\r\n\r\n"), body...)

	// Two clients send almost all of a message and hold the last bytes
	// back, so their reservations stay in the budget.
	holders := make([]*smtp.Client, 2)
	writers := make([]interface{ Close() error }, 2)
	for i := range holders {
		c, err := smtp.Dial(ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("a@origin.example", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("x@plain.test.example", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(msg); err != nil {
			t.Fatal(err)
		}
		holders[i], writers[i] = c, w
	}
	// Wait until the server has read both messages into its budget.
	deadline := time.Now().Add(20 * time.Second)
	for ts.srv.lim.Load().budget.inUse() < 2*msgSize {
		if time.Now().After(deadline) {
			t.Fatalf("server holds %d bytes, want at least %d", ts.srv.lim.Load().budget.inUse(), 2*msgSize)
		}
		time.Sleep(10 * time.Millisecond)
	}

	third, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	err = third.SendMail("a@origin.example", []string{"x@plain.test.example"}, bytes.NewReader(msg))
	var se *smtp.SMTPError
	if !asSMTPError(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("third message: %v, want 452 4.3.1", err)
	}
	// With SIZE= the refusal comes at MAIL, before the client sends.
	if err := third.Mail("a@origin.example", &smtp.MailOptions{Size: msgSize}); !asSMTPError(err, &se) || se.Code != 452 {
		t.Fatalf("MAIL SIZE=%d with the budget full: %v, want 452", msgSize, err)
	}
	for _, w := range writers {
		if err := w.Close(); err != nil {
			t.Fatalf("held message: %v", err)
		}
	}
	waitInflightZero(t, ts)
	if err := third.SendMail("a@origin.example", []string{"x@plain.test.example"}, bytes.NewReader(msg)); err != nil {
		t.Fatalf("after the budget emptied: %v", err)
	}
	if err := third.Mail("a@origin.example", &smtp.MailOptions{Size: msgSize}); err != nil {
		t.Fatalf("MAIL SIZE= with room: %v", err)
	}
	if n := ts.srv.lim.Load().budget.inUse(); n != msgSize {
		t.Fatalf("MAIL SIZE=%d reserved %d", msgSize, n)
	}
	if err := third.Reset(); err != nil {
		t.Fatal(err)
	}
	waitInflightZero(t, ts)
	if err := third.Mail("a@origin.example", &smtp.MailOptions{Size: msgSize}); err != nil {
		t.Fatal(err)
	}
	third.Close() // a dropped connection gives the SIZE= reservation back too
	waitInflightZero(t, ts)
	if !strings.Contains(ts.logs.String(), "DATA budget exhausted") {
		t.Error("no log line says the budget was exhausted")
	}
	if n := ts.count(t); n != 3 {
		t.Errorf("stored %d messages, want 3", n)
	}
	for _, h := range holders {
		h.Quit()
	}
}

func asSMTPError(err error, se **smtp.SMTPError) bool {
	e, ok := err.(*smtp.SMTPError)
	if ok {
		*se = e
	}
	return ok
}
