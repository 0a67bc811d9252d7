package smtpd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
)

func TestConnLimiter(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	l := newConnLimiter(3, 2, 1, trusted)
	a := netip.MustParseAddr("198.51.100.1")
	b := netip.MustParseAddr("198.51.100.2")
	partner := netip.MustParseAddr("192.0.2.7")
	v6a := netip.MustParseAddr("2001:db8:1:2::1")
	v6b := netip.MustParseAddr("2001:db8:1:2:ffff::9") // same /64
	v6c := netip.MustParseAddr("2001:db8:1:3::1")      // next /64

	admit := func(ip netip.Addr, want string) func() {
		t.Helper()
		rel, why := l.admit(ip)
		if why != want {
			t.Fatalf("admit %s: refused %q, want %q", ip, why, want)
		}
		return rel
	}
	ra1 := admit(a, "")
	admit(a, "")
	admit(a, refusedPerIP) // third from one address
	admit(netip.AddrFrom16(a.As16()), refusedPerIP)
	rb := admit(b, "")
	admit(b, refusedTotal)   // max 3 reached
	rp := admit(partner, "") // the reserve
	admit(partner, refusedTotal)
	rp()
	rb()
	ra1()
	ra1() // a second release of the same slot changes nothing
	if open, _ := l.counts(); open != 1 {
		t.Fatalf("open = %d after releases, want 1", open)
	}
	admit(v6a, "")
	admit(v6b, "")
	admit(v6a, refusedPerIP) // v6a and v6b are one /64
	admit(v6c, refusedTotal)
	if open, peers := l.counts(); open != 3 || peers != 2 {
		t.Fatalf("open %d, peers %d; want 3 and 2", open, peers)
	}
}

// dialFrom connects from a chosen loopback address (Linux routes all of
// 127.0.0.0/8 to lo).
func dialFrom(t *testing.T, local, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func TestPerIPCapAndReserve(t *testing.T) {
	yaml := testConfig + `
  - name: local2
    kind: arf
    addresses: ["local2@test.example"]
    accept_from: {networks: ["127.0.0.2/32"]}
`
	ts := startServerWith(t, yaml, func(c *config.Config) {
		c.SMTP.MaxConnections = 4
		c.SMTP.MaxConnectionsPerIP = 3
		c.SMTP.ReservedConnections = 2
	}, nil)
	var held []*client
	for i := 0; i < 3; i++ {
		c := dialFrom(t, "127.0.0.1", ts.addr)
		c.greet()
		held = append(held, c)
	}
	over := dialFrom(t, "127.0.0.1", ts.addr)
	if code, text := over.reply(); code != 421 || text != "4.7.0 mx.test.example Too many connections, try again later" {
		t.Fatalf("fourth from one address: %d %s, want the generic 421 4.7.0", code, text)
	}
	// 127.0.0.3 takes the last ordinary slot; the next stranger is refused.
	c3 := dialFrom(t, "127.0.0.3", ts.addr)
	c3.greet()
	if code, _ := dialFrom(t, "127.0.0.4", ts.addr).reply(); code != 421 {
		t.Fatalf("over max_connections: %d, want 421", code)
	}
	// 127.0.0.2 is a channel's accept_from network: the reserve serves it.
	for i := 0; i < 2; i++ {
		p := dialFrom(t, "127.0.0.2", ts.addr)
		p.greet()
		if code, text := p.message("a@origin.example", []string{"local2@test.example"}, "Subject: reserve\r\n\r\nx"); code != 250 {
			t.Fatalf("partner in the reserve: %d %s", code, text)
		}
		held = append(held, p)
	}
	if code, _ := dialFrom(t, "127.0.0.2", ts.addr).reply(); code != 421 {
		t.Fatalf("partner beyond the reserve: %d, want 421", code)
	}
	if n := strings.Count(ts.logs.String(), "smtp connections refused"); n == 0 || n > 3 {
		t.Errorf("%d refusal log lines, want 1 to 3 (one per reason and second)", n)
	}
}

// TestDataTimeoutHolds: a client that stops inside DATA or a BDAT chunk
// for longer than read_timeout gets 421 4.4.2 and the connection closes.
// Before, go-smtp went on reading to discard the rest of a DATA message
// after the timeout, which let a stalled client keep its slot for a
// second read_timeout, and one that resumed in that second period kept
// its session; a stalled BDAT chunk got 554 with the Go error text.
func TestDataTimeoutHolds(t *testing.T) {
	const rt = 500 * time.Millisecond
	ts := startServer(t, func(c *config.Config) { c.SMTP.ReadTimeout = config.Duration(rt) })
	for _, bdat := range []bool{false, true} {
		c := dial(t, ts.addr)
		c.greet()
		c.cmd(250, "MAIL FROM:<a@origin.example>")
		c.cmd(250, "RCPT TO:<fbl@test.example>")
		first, rest := "Subject: stalled\r\n\r\npart one\r\n", "part two\r\n.\r\n"
		if bdat {
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(first)+len(rest), first))
		} else {
			c.cmd(354, "DATA")
			c.send(first)
		}
		time.Sleep(3 * rt / 2)
		// The rest arrives after the timeout, before a second one would end.
		c.conn.Write([]byte(rest))
		if code, text := c.reply(); code != 421 || !strings.HasPrefix(text, "4.4.2 ") {
			t.Fatalf("after a pause of 1.5 read_timeout inside DATA (BDAT: %v): %d %s, want 421 4.4.2", bdat, code, text)
		}
		c.conn.Write([]byte("NOOP\r\n"))
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := c.r.ReadString('\n'); err != io.EOF {
			t.Fatalf("connection still open after the DATA timeout (BDAT: %v): %q %v", bdat, line, err)
		}
	}
	if n := ts.count(t); n != 0 {
		t.Errorf("stored %d messages of a timed-out DATA", n)
	}
	waitInflightZero(t, ts)
}

// TestSessionTimeout: a client that trickles a byte well within
// read_timeout is still cut off at session_timeout, in commands and in
// DATA.
func TestSessionTimeout(t *testing.T) {
	ts := startServer(t, func(c *config.Config) {
		c.SMTP.ReadTimeout = config.Duration(2 * time.Second)
		c.SMTP.SessionTimeout = config.Duration(2 * time.Second)
	})
	for _, inData := range []bool{false, true} {
		c := dial(t, ts.addr)
		c.greet()
		if inData {
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			c.cmd(250, "RCPT TO:<fbl@test.example>")
			c.cmd(354, "DATA")
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 100; i++ { // 30 s at most
				if _, err := c.conn.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(300 * time.Millisecond)
			}
		}()
		// The partial command line cut by the deadline may first get
		// go-smtp's 501.
		code, text := c.reply()
		if code == 501 {
			code, text = c.reply()
		}
		if code != 421 || !strings.HasPrefix(text, "4.4.2 ") {
			t.Fatalf("trickler (in DATA: %v): %d %s, want 421 4.4.2", inData, code, text)
		}
		c.conn.Close()
		<-done
	}
	ts.sendOK(t)
}
