package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// hostileConfig is a daemon with small SMTP limits, so that a hostile
// client hits them within seconds. 127.0.0.2 is a partner network: the
// reserve of connection slots is kept for it.
func hostileConfig(t *testing.T, dir, smtpYAML, httpListen string) string {
	t.Helper()
	path := filepath.Join(dir, "xarfd.yaml")
	yaml := fmt.Sprintf(`
hostname: mx.e2e.example
data_dir: %s
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
smtp:
  listen: ["127.0.0.1:0"]
%s
http: {listen: "%s"}
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
  - name: partner
    kind: arf
    addresses: ["fbl@partner.e2e.example"]
    accept_from: {networks: ["127.0.0.2/32"]}
`, filepath.Join(dir, "data"), smtpYAML, httpListen)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return d.Dial("tcp", addr)
}

// trickler is a slowloris client: it connects from local, and once
// admitted sends one byte of a command every interval, never finishing
// the line, until the server closes; then it connects again, until stop
// (at once) or quiet (once its session has ended).
// admitted counts its sessions open now, refused the 421s at connect.
func trickler(local, addr string, interval time.Duration, stop, quiet <-chan struct{}, admitted, refused *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		case <-quiet:
			return
		default:
		}
		c, err := dialFrom(local, addr)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		r := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		banner, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(banner, "220 ") {
			if strings.HasPrefix(banner, "421 4.7.0 ") {
				refused.Add(1)
			}
			c.Close()
			time.Sleep(200 * time.Millisecond)
			continue
		}
		admitted.Add(1)
		closed := make(chan struct{})
		go func() { // the server's 421 and close end the session
			c.SetReadDeadline(time.Time{})
			for {
				if _, err := r.ReadString('\n'); err != nil {
					close(closed)
					return
				}
			}
		}()
		line := "EHLO slow.example.invalid"
	trickle:
		for i := 0; ; i++ {
			if _, err := c.Write([]byte{line[i%len(line)]}); err != nil {
				break
			}
			select {
			case <-stop:
				break trickle
			case <-closed:
				break trickle
			case <-time.After(interval):
			}
		}
		c.Close()
		admitted.Add(-1)
	}
}

// TestSlowlorisLegitClientsServed: 200 tricklers from 127.0.0.1 take
// only max_connections_per_ip slots, so 10 clients from 127.0.0.2 and 10
// from 127.0.0.4 all get 250. Then tricklers from 40 more addresses fill
// max_connections: 10 clients of the partner network 127.0.0.2 are still
// all served from the reserve; once the tricklers stop reconnecting,
// session_timeout ends every session they hold, and a stranger from
// 127.0.0.3 is served.
func TestSlowlorisLegitClientsServed(t *testing.T) {
	dir := t.TempDir()
	cfg := hostileConfig(t, dir, `
  max_connections: 50
  max_connections_per_ip: 20
  reserved_connections: 10
  read_timeout: 3s
  session_timeout: 6s`, "")
	d := startDaemon(t, dir, "-config", cfg)

	stop, quiet := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	var admitted, refused atomic.Int64
	defer func() {
		close(stop)
		wg.Wait()
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d tricklers admitted, %d refused", what, admitted.Load(), refused.Load())
			}
		}
	}
	sendAll := func(local, rcpt string) {
		t.Helper()
		var ok atomic.Int64
		var errs sync.Map
		var cw sync.WaitGroup
		for i := 0; i < 10; i++ {
			cw.Go(func() {
				if err := sendFrom(local, d.addr, rcpt, i); err != nil {
					errs.Store(i, err)
					return
				}
				ok.Add(1)
			})
		}
		cw.Wait()
		errs.Range(func(k, v any) bool { t.Errorf("client %v from %s: %v", k, local, v); return true })
		if ok.Load() != 10 {
			t.Fatalf("%d of 10 clients from %s got 250", ok.Load(), local)
		}
	}

	for i := 0; i < 200; i++ {
		wg.Go(func() { trickler("127.0.0.1", d.addr, 2*time.Second, stop, quiet, &admitted, &refused) })
	}
	waitFor("200 tricklers from 127.0.0.1", func() bool { return admitted.Load() >= 20 && refused.Load() >= 180 })
	if n := admitted.Load(); n > 20 {
		t.Fatalf("%d tricklers from one address admitted, max_connections_per_ip is 20", n)
	}
	sendAll("127.0.0.2", "x@trap.e2e.example")
	sendAll("127.0.0.4", "x@trap.e2e.example")

	// 40 more addresses fill what 127.0.0.1's 20 leave of max_connections.
	for i := 0; i < 40; i++ {
		local := fmt.Sprintf("127.0.1.%d", i+1)
		wg.Go(func() { trickler(local, d.addr, 2*time.Second, stop, quiet, &admitted, &refused) })
	}
	waitFor("tricklers from 41 addresses", func() bool { return admitted.Load() >= 50 })
	if n := admitted.Load(); n > 50 {
		t.Fatalf("%d tricklers admitted, max_connections is 50", n)
	}
	sendAll("127.0.0.2", "fbl@partner.e2e.example")

	// The tricklers never stay silent for read_timeout, so only
	// session_timeout (6s) ends their sessions: told not to come back,
	// they are all gone within it (plus scheduling slack), and a stranger
	// then gets a slot. Without the session deadline they would hold
	// their slots until stop.
	close(quiet)
	waitFor("every trickler's session ended by session_timeout", func() bool { return admitted.Load() == 0 })
	if err := sendFrom("127.0.0.3", d.addr, "x@trap.e2e.example", 0); err != nil {
		t.Fatalf("a stranger after the tricklers' sessions ended: %v", err)
	}
	logs := d.logs.String()
	if !strings.Contains(logs, `"limit":"max_connections_per_ip"`) || !strings.Contains(logs, `"limit":"max_connections"`) {
		t.Errorf("refusals not logged with their limit:\n%s", tail(logs, 20))
	}
	if n := strings.Count(logs, "smtp connections refused"); n > 2*60 {
		t.Errorf("%d refusal log lines in under a minute: not rate-limited", n)
	}
}

// sendFrom delivers one small message from the loopback address local
// with a real go-smtp client.
func sendFrom(local, addr, rcpt string, i int) error {
	conn, err := dialFrom(local, addr)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	msg := fmt.Sprintf("From: a@origin.example\r\nTo: %s\r\nSubject: legit %d\r\nMessage-ID: <legit%d@origin.example>\r\n\r\nhello\r\n", rcpt, i, i)
	if err := c.SendMail("a@origin.example", []string{rcpt}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// TestMemoryFloodAnswered: with the DATA budget held by two clients that
// stop just before the end of their messages, a flood of 16 sessions
// sending large messages all get 452 4.3.1 (and nothing is stored for
// them), the daemon stays up, and once the two finish their messages are
// stored and a new one is accepted.
func TestMemoryFloodAnswered(t *testing.T) {
	dir := t.TempDir()
	cfg := hostileConfig(t, dir, `
  max_message_bytes: 4194304
  max_inflight_bytes: 8388608
  read_timeout: 10m
  session_timeout: 20m`, "127.0.0.1:0")
	d := startDaemon(t, dir, "-config", cfg)
	metrics := httpAddr(t, d) + "/metrics"
	big := []byte("Subject: flood\r\n\r\n" + strings.Repeat(strings.Repeat("z", 78)+"\r\n", 3500000/80))
	// The flood's messages are smaller: with the budget full, the first
	// 64 KiB of each already cannot be had.
	small := big[:600000]
	type holder struct {
		c *smtp.Client
		w interface{ Close() error }
	}
	var holders []holder
	for i := 0; i < 2; i++ {
		c, err := smtp.Dial(d.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("a@origin.example", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("x@trap.e2e.example", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(big); err != nil {
			t.Fatal(err)
		}
		holders = append(holders, holder{c, w})
	}

	// The two hold the whole budget once the daemon has read their
	// messages: a session that has read 3 MiB takes 4 MiB (the share
	// doubles with what arrived), and the budget is twice that.
	for deadline := time.Now().Add(60 * time.Second); inflight(t, metrics) < 8<<20; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon holds %d bytes of DATA, want the two messages", inflight(t, metrics))
		}
	}

	codes := make(chan int, 16)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Go(func() {
			c, err := smtp.Dial(d.addr)
			if err != nil {
				codes <- -1
				return
			}
			defer c.Close()
			err = c.SendMail("a@origin.example", []string{"x@trap.e2e.example"}, bytes.NewReader(small))
			var se *smtp.SMTPError
			switch {
			case err == nil:
				codes <- 250
			case asSMTPError(err, &se) && se.EnhancedCode == (smtp.EnhancedCode{4, 3, 1}):
				codes <- se.Code
			default:
				t.Errorf("flood client: %v", err)
				codes <- 0
			}
		})
	}
	wg.Wait()
	close(codes)
	n452 := 0
	for c := range codes {
		if c != 452 {
			t.Errorf("flood client got %d while the budget was held, want 452 4.3.1", c)
			continue
		}
		n452++
	}
	for i, h := range holders {
		if err := h.w.Close(); err != nil {
			t.Fatalf("holder %d: %v", i, err)
		}
		h.c.Quit()
	}
	select {
	case <-d.exited:
		t.Fatalf("daemon died: %v", d.err)
	default:
	}
	if err := sendFrom("127.0.0.1", d.addr, "x@trap.e2e.example", 99); err != nil {
		t.Fatalf("after the flood: %v", err)
	}
	// The daemon's log reaches us through a pipe, a moment after the
	// client has its reply: wait for the third line, then count exactly.
	logs := d.logs.String()
	for end := time.Now().Add(10 * time.Second); strings.Count(logs, `"code":250`) < 3 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		logs = d.logs.String()
	}
	if got := strings.Count(logs, `"code":250`); got != 3 {
		t.Errorf("%d messages accepted, want the 2 holders and the last one", got)
	}
	if !strings.Contains(logs, "DATA budget exhausted") {
		t.Error("no log line says the budget was exhausted")
	}
	d.stop()
}

func asSMTPError(err error, se **smtp.SMTPError) bool {
	e, ok := err.(*smtp.SMTPError)
	if ok {
		*se = e
	}
	return ok
}

// inflight reads xarfd_smtp_inflight_bytes from the daemon's metrics.
func inflight(t *testing.T, url string) int64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "xarfd_smtp_inflight_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(f)
		}
	}
	t.Fatal("no xarfd_smtp_inflight_bytes in /metrics")
	return 0
}
