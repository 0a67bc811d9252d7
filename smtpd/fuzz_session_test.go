package smtpd

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
)

// fuzzOps are the commands a fuzz input is made of: each op byte picks
// one (mod len), the byte after it picks a variant.
var fuzzOps = []func(arg byte) string{
	func(a byte) string {
		return []string{"EHLO fuzz.example\r\n", "HELO fuzz.example\r\n", "EHLO\r\n", "LHLO x\r\n"}[a%4]
	},
	func(a byte) string {
		return []string{"MAIL FROM:<a@origin.example>\r\n", "MAIL FROM:<>\r\n", fmt.Sprintf("MAIL FROM:<a@origin.example> SIZE=%d\r\n", int(a)<<14),
			"MAIL FROM:<a@origin.example> BODY=BINARYMIME\r\n", "MAIL FROM:a\r\n", "MAIL FROM:<a@origin.example> SIZE=99999999999\r\n"}[a%6]
	},
	func(a byte) string {
		return []string{"RCPT TO:<fbl@test.example>\r\n", "RCPT TO:<x@trap.test.example>\r\n", "RCPT TO:<x@plain.test.example>\r\n",
			"RCPT TO:<partner@test.example>\r\n", "RCPT TO:<nobody@elsewhere.example>\r\n", "RCPT TO:<>\r\n"}[a%6]
	},
	func(a byte) string {
		body := strings.Repeat("line of body\r\n", int(a%16))
		return []string{"DATA\r\nSubject: f\r\n\r\n" + body + ".\r\n", "DATA\r\n" + body, "DATA\r\n..dot\r\n\n.\n.\r\n", "DATA x\r\n"}[a%4]
	},
	func(a byte) string {
		n := int(a % 40)
		chunk := strings.Repeat("b", n)
		return []string{fmt.Sprintf("BDAT %d\r\n%s", n, chunk), fmt.Sprintf("BDAT %d LAST\r\n%s", n, chunk), "BDAT 0\r\n", "BDAT 0 LAST\r\n",
			fmt.Sprintf("BDAT %d\r\n", n+5), "BDAT -1\r\n", "BDAT 5 FIRST\r\nxxxxx"}[a%7]
	},
	func(a byte) string { return []string{"RSET\r\n", "NOOP\r\n", "VRFY x\r\n", "HELP\r\n"}[a%4] },
	func(a byte) string {
		return []string{"AUTH PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n", "AUTH LOGIN\r\n", "STARTTLS\r\n", "*\r\n"}[a%5]
	},
	func(a byte) string {
		return []string{"QUIT\r\n", "\r\n", "garbage\r\n", strings.Repeat("A", 70000) + "\r\n", "MAIL\r\n", "RCPT\r\n", "\x00\xff\r\n"}[a%7]
	},
}

// FuzzSession drives a real server over loopback with command sequences
// made from the input, pipelined, then half-closes and reads every reply.
// Every reply must be well-formed, none the 421 of a recovered panic nor
// a 554 (go-smtp's reply to an error that is not an *smtp.SMTPError,
// which would carry internal text), and when the connection is gone every
// byte of the DATA budget and every connection slot must be back.
func FuzzSession(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 0, 1, 0, 2, 0, 3, 0, 7, 0},               // a whole transaction, QUIT
		{0, 0, 1, 2, 2, 1, 4, 5, 5, 0, 1, 0, 2, 1},   // BDAT, RSET, again
		{0, 0, 1, 0, 2, 1, 4, 5, 0, 0, 4, 6},         // BDAT, EHLO, BDAT LAST
		{0, 0, 1, 5, 2, 0, 2, 4, 3, 1},               // SIZE=, refused rcpt, DATA cut off
		{0, 0, 1, 0, 2, 3, 3, 0, 6, 3, 5, 0, 7, 3},   // partner refused, STARTTLS, long line
		{0, 0, 1, 0, 2, 0, 4, 2, 5, 0, 4, 1, 7, 0},   // BDAT 0, RSET, BDAT LAST outside a txn
		{0, 0, 1, 1, 2, 1, 3, 2, 1, 0, 2, 2, 4, 7},   // dot tricks, then BDAT with a missing chunk
		{2, 0, 3, 0, 4, 0, 0, 0, 7, 6, 7, 1, 7, 2},   // out of order
		{0, 0, 1, 2, 2, 0, 4, 9, 4, 9, 4, 10, 5, 0},  // several chunks, LAST
		{0, 0, 1, 0, 2, 0, 3, 15, 1, 0, 2, 1, 3, 15}, // two messages
	} {
		f.Add(seed)
	}
	ts := startServer(f, func(c *config.Config) {
		c.SMTP.MaxConnectionsPerIP = 1000
		c.SMTP.MaxInflightBytes = 4 << 20
		c.SMTP.MaxMessageBytes = 2 << 20
	})
	ts.srv.lim.Load().inflightWait = 10 * time.Millisecond
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 400 {
			return
		}
		var script bytes.Buffer
		for i := 0; i+1 < len(in); i += 2 {
			script.WriteString(fuzzOps[int(in[i])%len(fuzzOps)](in[i+1]))
		}
		conn, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		replies := make(chan []string, 1)
		go func() {
			var lines []string
			r := bufio.NewReader(conn)
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				line, err := r.ReadString('\n')
				if line != "" {
					lines = append(lines, line)
				}
				if err != nil {
					replies <- lines
					return
				}
			}
		}()
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		conn.Write(script.Bytes()) // the server may close early: not an error
		conn.(*net.TCPConn).CloseWrite()
		lines := <-replies
		if len(lines) == 0 || !strings.HasPrefix(lines[0], "220 ") {
			t.Fatalf("no banner: %q", lines)
		}
		for _, l := range lines {
			if len(l) < 5 || l[0] < '2' || l[0] > '5' || (l[3] != ' ' && l[3] != '-') || !strings.HasSuffix(l, "\r\n") {
				t.Fatalf("malformed reply line %q", l)
			}
			if strings.HasPrefix(l, "554") || strings.Contains(l, "Internal server error") {
				t.Fatalf("reply %q to %q", l, script.String())
			}
		}
		conn.Close()
		lim := ts.srv.lim.Load()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			open, _ := lim.conns.counts()
			if lim.budget.errors() != 0 {
				t.Fatalf("the DATA budget was released beyond what was taken; script %q", script.String())
			}
			if open == 0 && lim.budget.inUse() == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the session: %d connections open, %d bytes of the DATA budget held; script %q", open, lim.budget.inUse(), script.String())
			}
		}
		if s := ts.logs.String(); strings.Contains(s, "panic") {
			t.Fatalf("panic logged:\n%s", s)
		}
	})
}
