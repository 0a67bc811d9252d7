package smtpd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// waitInflightZero waits until every session has given its DATA budget
// back: after RSET or QUIT, go-smtp's BDAT goroutine finishes on its own.
func waitInflightZero(t *testing.T, ts *testServer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ts.srv.lim.Load().budget.inUse() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("DATA budget still holds %d bytes", ts.srv.lim.Load().budget.inUse())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := ts.srv.lim.Load().budget.errors(); n != 0 {
		t.Fatalf("DATA budget released %d bytes more than it gave", n)
	}
}

// TestBDATThenAbort sends part of a message in BDAT chunks and then
// abandons it in each way a client can (RSET, EHLO, a new BDAT of size 0
// followed by RSET, QUIT, a dropped connection), then sends a whole
// message with BDAT on the same connection. Under -race this caught
// Reset writing the transaction while go-smtp's BDAT goroutine was still
// inside Data reading it.
func TestBDATThenAbort(t *testing.T) {
	ts := startServer(t, nil)
	chunk := "Subject: chunked\r\n\r\n" + strings.Repeat("x", 200) + "\r\n"
	for _, abort := range []string{"RSET", "EHLO again.test.example", "BDAT0+RSET", "QUIT", "drop"} {
		t.Run(abort, func(t *testing.T) {
			c := dial(t, ts.addr)
			if code, text := c.reply(); code != 220 {
				t.Fatalf("banner: %d %s", code, text)
			}
			c.send("EHLO client.test.example\r\n")
			var ehlo []string
			for {
				line, err := c.r.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				ehlo = append(ehlo, line)
				if line[3] == ' ' {
					break
				}
			}
			if !strings.Contains(strings.Join(ehlo, ""), "CHUNKING") {
				t.Fatalf("CHUNKING not advertised: %q", ehlo)
			}
			for round := 0; round < 3; round++ {
				c.cmd(250, "MAIL FROM:<a@origin.example>")
				c.cmd(250, "RCPT TO:<x@trap.test.example>")
				if abort == "BDAT0+RSET" {
					c.cmd(250, "BDAT 0")
					c.cmd(250, "RSET")
					continue
				}
				c.send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
				if code, text := c.reply(); code != 250 {
					t.Fatalf("BDAT: %d %s", code, text)
				}
				switch abort {
				case "QUIT":
					c.cmd(221, "QUIT")
					c = nil
				case "drop":
					c.conn.Close()
					c = nil
				default:
					c.cmd(250, abort)
				}
				if c == nil {
					c = dial(t, ts.addr)
					c.greet()
				}
			}
			before := ts.count(t)
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			c.cmd(250, "RCPT TO:<x@trap.test.example>")
			c.send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
			c.reply()
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
			if code, text := c.reply(); code != 250 {
				t.Fatalf("BDAT LAST: %d %s", code, text)
			}
			if n := ts.count(t); n != before+1 {
				t.Fatalf("stored %d messages, want 1 (aborted ones must not be stored)", n-before)
			}
			c.cmd(221, "QUIT")
			waitInflightZero(t, ts)
		})
	}
	logs := ts.logs.String()
	if strings.Contains(logs, `"level":"error"`) {
		t.Errorf("errors logged:\n%s", logs)
	}
}
