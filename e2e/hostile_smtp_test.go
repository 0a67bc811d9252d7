package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
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
func hostileConfig(t *testing.T, dir, smtpYAML string) string {
	t.Helper()
	path := filepath.Join(dir, "xarfd.yaml")
	yaml := fmt.Sprintf(`
hostname: mx.e2e.example
data_dir: %s
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
smtp:
  listen: ["127.0.0.1:0"]
%s
http: {listen: ""}
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
  - name: partner
    kind: arf
    addresses: ["fbl@partner.e2e.example"]
    accept_from: {networks: ["127.0.0.2/32"]}
`, filepath.Join(dir, "data"), smtpYAML)
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
// the line, until the server closes; then it connects again, until stop.
// admitted counts its sessions open now, refused the 421s at connect.
func trickler(local, addr string, interval time.Duration, stop <-chan struct{}, admitted, refused *atomic.Int64) {
	for {
		select {
		case <-stop:
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

// TestSlowlorisLegitClientsServed: 200 tricklers from 127.0.0.1 and
// more from 40 other addresses keep the daemon's connection slots full;
// 10 clients of the partner network 127.0.0.2 still all get 250, and
// a stranger from 127.0.0.3 does after its tricklers time out.
func TestSlowlorisLegitClientsServed(t *testing.T) {
	dir := t.TempDir()
	cfg := hostileConfig(t, dir, `
  max_connections: 50
  max_connections_per_ip: 20
  reserved_connections: 10
  read_timeout: 3s
  session_timeout: 6s`)
	d := startDaemon(t, dir, "-config", cfg)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var admitted, refused atomic.Int64
	for i := 0; i < 200; i++ {
		wg.Go(func() { trickler("127.0.0.1", d.addr, 2*time.Second, stop, &admitted, &refused) })
	}
	// 40 more addresses fill what 127.0.0.1's 20 leave of max_connections.
	for i := 0; i < 40; i++ {
		local := fmt.Sprintf("127.0.1.%d", i+1)
		wg.Go(func() { trickler(local, d.addr, 2*time.Second, stop, &admitted, &refused) })
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for admitted.Load() < 50 || refused.Load() < 180 {
		if time.Now().After(deadline) {
			t.Fatalf("tricklers did not fill the slots: %d admitted, %d refused", admitted.Load(), refused.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := admitted.Load(); n > 50 {
		t.Fatalf("%d tricklers admitted, max_connections is 50", n)
	}

	// The partner's 10 clients, all at once, while the slots are full.
	var ok atomic.Int64
	var errs sync.Map
	var cw sync.WaitGroup
	for i := 0; i < 10; i++ {
		cw.Go(func() {
			if err := sendFrom("127.0.0.2", d.addr, "fbl@partner.e2e.example", i); err != nil {
				errs.Store(i, err)
				return
			}
			ok.Add(1)
		})
	}
	cw.Wait()
	errs.Range(func(k, v any) bool { t.Errorf("partner client %v: %v", k, v); return true })
	if ok.Load() != 10 {
		t.Fatalf("%d of 10 partner clients got 250", ok.Load())
	}

	// A stranger is refused while the slots are full; when the
	// tricklers' sessions run out (session_timeout) it gets a slot in
	// one of its retries, like an MTA retrying later.
	var strangerErr error
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if strangerErr = sendFrom("127.0.0.3", d.addr, "x@trap.e2e.example", 0); strangerErr == nil {
			break
		}
	}
	if strangerErr != nil {
		t.Fatalf("a stranger never got a slot: %v", strangerErr)
	}
	logs := d.logs.String()
	if !strings.Contains(logs, `"limit":"max_connections_per_ip"`) || !strings.Contains(logs, `"limit":"max_connections"`) {
		t.Errorf("refusals not logged with their limit:\n%s", tail(logs, 20))
	}
	if n := strings.Count(logs, "smtp connections refused"); n > 2*40 {
		t.Errorf("%d refusal log lines in a few seconds: not rate-limited", n)
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
