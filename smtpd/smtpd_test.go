package smtpd

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

func TestAcceptStoresRawAndEnvelope(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.greet()
	body := "From: a@origin.example\r\nSubject: spam\r\n\r\nbuy now\r\n..leading dot\r\n"
	code, text := c.message("bounce@origin.example", []string{"fbl@test.example"}, body)
	if code != 250 || !strings.HasPrefix(text, "2.0.0 Ok: queued as ") {
		t.Fatalf("got %d %s", code, text)
	}
	ids := queuedIDs(t, text)
	if len(ids) != 1 {
		t.Fatalf("want one id, got %v", ids)
	}
	m, err := ts.store.Message(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Channel != "fbl" || m.Envelope.MailFrom != "bounce@origin.example" ||
		m.Envelope.HELO != "client.test.example" || m.Envelope.PeerIP.String() != "127.0.0.1" ||
		m.Envelope.PeerPort == 0 || m.Envelope.Via != "smtp" ||
		// plain mail to an ARF address is no report: kept, with the reason
		m.Status != store.StatusQuarantined || !strings.Contains(m.Reason, "not a feedback report") {
		t.Errorf("record = %+v", m)
	}
	if len(m.Envelope.Rcpts) != 1 || m.Envelope.Rcpts[0] != "fbl@test.example" {
		t.Errorf("rcpts = %v", m.Envelope.Rcpts)
	}
	raw, err := ts.store.Raw(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	// Dot-stuffing is undone; everything else is byte-identical.
	want := strings.Replace(body, "\r\n..leading", "\r\n.leading", 1) + "\r\n"
	if raw = stripAR(t, raw); string(raw) != want {
		t.Errorf("raw = %q, want %q", raw, want)
	}
	if !strings.Contains(ts.logs.String(), `"code":250`) || strings.Contains(ts.logs.String(), "fbl@test.example") {
		t.Errorf("log must have the transaction's code and no recipient: %s", ts.logs.String())
	}
}

func TestTwoChannelsStoredOncePerChannel(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.greet()
	code, text := c.message("", []string{"fbl@test.example", "a@trap.test.example", "B@Trap.Test.Example"},
		"Subject: both\r\n\r\nx")
	if code != 250 {
		t.Fatalf("got %d %s", code, text)
	}
	ids := queuedIDs(t, text)
	if len(ids) != 2 {
		t.Fatalf("want 2 ids, got %v", ids)
	}
	got := map[string][]string{}
	for _, id := range ids {
		m, err := ts.store.Message(id)
		if err != nil {
			t.Fatal(err)
		}
		got[m.Channel] = m.Envelope.Rcpts
		if m.Envelope.MailFrom != "" {
			t.Errorf("null sender stored as %q", m.Envelope.MailFrom)
		}
	}
	// Each channel sees only its own recipients; the trap channel redacts
	// them.
	if strings.Join(got["fbl"], ",") != "fbl@test.example" ||
		strings.Join(got["trap"], ",") != "redacted@redacted.invalid,redacted@redacted.invalid" {
		t.Errorf("recipients per channel = %v", got)
	}
	if n := ts.count(t); n != 2 {
		t.Errorf("stored %d records, want 2", n)
	}
}

// TestBadInput sends each kind of bad input over a real connection and
// checks its documented reply, what was stored, and that the server goes
// on serving others.
func TestBadInput(t *testing.T) {
	long := strings.Repeat("x", 10000)
	cases := []struct {
		name  string
		tweak func(*config.Config)
		run   func(t *testing.T, c *client) // drives the session
		// stored is how many records the case must add.
		stored int
		// raw, when set, is the exact stored body of the one record.
		raw string
	}{
		{name: "unknown recipient", run: func(t *testing.T, c *client) {
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			if got := c.cmd(550, "RCPT TO:<nobody@elsewhere.example>"); !strings.HasPrefix(got, "5.1.1 ") {
				t.Errorf("enhanced code: %q", got)
			}
			c.cmd(550, "RCPT TO:<fbl@test.example.evil>")
			c.cmd(550, "RCPT TO:<fbl@sub.test.example>")
			c.cmd(502, "DATA") // go-smtp: no valid recipient yet
		}},
		{name: "disallowed peer network", run: func(t *testing.T, c *client) {
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			if got := c.cmd(550, "RCPT TO:<partner@test.example>"); !strings.HasPrefix(got, "5.7.1 ") {
				t.Errorf("enhanced code: %q", got)
			}
		}},
		{name: "oversized message", tweak: func(c *config.Config) { c.SMTP.MaxMessageBytes = 4096 }, run: func(t *testing.T, c *client) {
			code, text := c.message("a@origin.example", []string{"fbl@test.example"}, "Subject: big\r\n\r\n"+strings.Repeat("0123456789abcdef\r\n", 400))
			if code != 552 || !strings.HasPrefix(text, "5.3.4 ") {
				t.Errorf("got %d %s, want 552 5.3.4", code, text)
			}
		}},
		{name: "oversized SIZE declared", tweak: func(c *config.Config) { c.SMTP.MaxMessageBytes = 4096 }, run: func(t *testing.T, c *client) {
			c.cmd(552, "MAIL FROM:<a@origin.example> SIZE=100000")
		}},
		{name: "too many recipients", tweak: func(c *config.Config) { c.SMTP.MaxRecipients = 2 }, run: func(t *testing.T, c *client) {
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			c.cmd(250, "RCPT TO:<a@trap.test.example>")
			c.cmd(250, "RCPT TO:<b@trap.test.example>")
			if got := c.cmd(452, "RCPT TO:<c@trap.test.example>"); !strings.HasPrefix(got, "4.5.3 ") {
				t.Errorf("enhanced code: %q", got)
			}
			c.cmd(354, "DATA")
			c.send("Subject: two of three\r\n\r\nx\r\n.\r\n")
			if code, text := c.reply(); code != 250 {
				t.Errorf("the accepted recipients still get the message: %d %s", code, text)
			}
		}, stored: 1},
		{name: "bare LF line endings", run: func(t *testing.T, c *client) {
			code, text := c.message("a@origin.example", []string{"fbl@test.example"}, "Subject: lf\nX: y\n\nline1\nline2")
			if code != 250 {
				t.Errorf("got %d %s", code, text)
			}
		}, stored: 1, raw: "Subject: lf\nX: y\n\nline1\nline2\r\n"},
		{name: "NUL bytes", run: func(t *testing.T, c *client) {
			code, text := c.message("a@origin.example", []string{"fbl@test.example"}, "Subject: nul\r\n\r\na\x00b\x00\x00c")
			if code != 250 {
				t.Errorf("got %d %s", code, text)
			}
		}, stored: 1, raw: "Subject: nul\r\n\r\na\x00b\x00\x00c\r\n"},
		{name: "10000-character line", run: func(t *testing.T, c *client) {
			code, text := c.message("a@origin.example", []string{"fbl@test.example"}, "Subject: long\r\n\r\n"+long)
			if code != 250 {
				t.Errorf("got %d %s", code, text)
			}
		}, stored: 1, raw: "Subject: long\r\n\r\n" + long + "\r\n"},
		{name: "line over max_line_length", tweak: func(c *config.Config) { c.SMTP.MaxLineLength = 5000 }, run: func(t *testing.T, c *client) {
			code, text := c.message("a@origin.example", []string{"fbl@test.example"}, "Subject: long\r\n\r\n"+long)
			if code != 500 || !strings.HasPrefix(text, "5.5.2 ") {
				t.Errorf("got %d %s, want 500 5.5.2", code, text)
			}
		}},
		{name: "8-bit and non-UTF-8 headers", run: func(t *testing.T, c *client) {
			code, text := c.message("a@origin.example", []string{"fbl@test.example"}, "Subject: gr\xfc\xdfe \xe4\r\nFrom: \xd0\x9f\xd1\x80\xd0\xb8 <a@origin.example>\r\nX-Bin: \xff\xfe\r\n\r\nk\xf6rper")
			if code != 250 {
				t.Errorf("got %d %s", code, text)
			}
		}, stored: 1, raw: "Subject: gr\xfc\xdfe \xe4\r\nFrom: \xd0\x9f\xd1\x80\xd0\xb8 <a@origin.example>\r\nX-Bin: \xff\xfe\r\n\r\nk\xf6rper\r\n"},
		{name: "SMTP smuggling", run: func(t *testing.T, c *client) {
			// Only <CRLF>.<CRLF> ends DATA; the smuggled transaction stays
			// inside the first message and is never executed.
			smuggled := "Subject: a\r\n\r\nfirst\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<fbl@test.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\n\r\nthird\r.\r\n"
			code, text := c.message("a@origin.example", []string{"fbl@test.example"}, smuggled)
			if code != 250 {
				t.Fatalf("got %d %s", code, text)
			}
			c.cmd(250, "NOOP")
		}, stored: 1, raw: "Subject: a\r\n\r\nfirst\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<fbl@test.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n\n\r\nthird\r.\r\n\r\n"},
		{name: "client slower than read_timeout while idle", tweak: func(c *config.Config) { c.SMTP.ReadTimeout = config.Duration(300 * time.Millisecond) }, run: func(t *testing.T, c *client) {
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			time.Sleep(600 * time.Millisecond)
			if code, text := c.reply(); code != 421 || !strings.HasPrefix(text, "4.4.2") {
				t.Errorf("got %d %s, want 421 4.4.2", code, text)
			}
		}},
		{name: "client slower than read_timeout inside DATA", tweak: func(c *config.Config) { c.SMTP.ReadTimeout = config.Duration(300 * time.Millisecond) }, run: func(t *testing.T, c *client) {
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			c.cmd(250, "RCPT TO:<fbl@test.example>")
			c.cmd(354, "DATA")
			c.send("Subject: slow\r\n\r\npart one\r\n")
			time.Sleep(600 * time.Millisecond)
			if code, text := c.reply(); code != 421 || !strings.HasPrefix(text, "4.4.2") {
				t.Errorf("got %d %s, want 421 4.4.2", code, text)
			}
		}},
		{name: "slow but steady client inside DATA", tweak: func(c *config.Config) { c.SMTP.ReadTimeout = config.Duration(400 * time.Millisecond) }, run: func(t *testing.T, c *client) {
			// Each pause is below read_timeout, the whole transfer above it.
			c.cmd(250, "MAIL FROM:<a@origin.example>")
			c.cmd(250, "RCPT TO:<fbl@test.example>")
			c.cmd(354, "DATA")
			c.send("Subject: steady\r\n\r\n")
			for i := 0; i < 5; i++ {
				time.Sleep(150 * time.Millisecond)
				c.send("chunk\r\n")
			}
			c.send(".\r\n")
			if code, text := c.reply(); code != 250 {
				t.Errorf("got %d %s", code, text)
			}
		}, stored: 1},
		{name: "pipelined commands", run: func(t *testing.T, c *client) {
			c.send("MAIL FROM:<a@origin.example>\r\nRCPT TO:<fbl@test.example>\r\nRCPT TO:<nobody@elsewhere.example>\r\nRCPT TO:<x@trap.test.example>\r\nDATA\r\n")
			for _, want := range []int{250, 250, 550, 250, 354} {
				if code, text := c.reply(); code != want {
					t.Fatalf("pipelined reply %d %s, want %d", code, text, want)
				}
			}
			c.send("Subject: piped\r\n\r\nx\r\n.\r\nRSET\r\nNOOP\r\n")
			for _, want := range []int{250, 250, 250} {
				if code, text := c.reply(); code != want {
					t.Fatalf("pipelined reply %d %s, want %d", code, text, want)
				}
			}
		}, stored: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.tweak)
			c := dial(t, ts.addr)
			c.greet()
			tc.run(t, c)
			if n := ts.count(t); n != tc.stored {
				t.Errorf("stored %d records, want %d", n, tc.stored)
			}
			if tc.raw != "" {
				var raw []byte
				ts.store.ForEachMessage("", func(m *store.Message) error {
					raw, _ = ts.store.Raw(m.ID)
					return nil
				})
				if raw = stripAR(t, raw); !bytes.Equal(raw, []byte(tc.raw)) {
					t.Errorf("stored body\n%q\nwant\n%q", raw, tc.raw)
				}
			}
			before := ts.count(t)
			ts.sendOK(t)
			if ts.count(t) != before+1 {
				t.Error("the good message after the bad one was not stored")
			}
		})
	}
}

func TestMaxConnections(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.SMTP.MaxConnections = 2 })
	a, b := dial(t, ts.addr), dial(t, ts.addr)
	a.greet()
	b.greet()
	over := dial(t, ts.addr)
	if code, text := over.reply(); code != 421 || !strings.HasPrefix(text, "4.7.0 ") {
		t.Fatalf("third connection: got %d %s, want 421 4.7.0", code, text)
	}
	// The two admitted sessions keep working.
	if code, text := a.message("a@origin.example", []string{"fbl@test.example"}, "Subject: a\r\n\r\nx"); code != 250 {
		t.Fatalf("got %d %s", code, text)
	}
	b.cmd(221, "QUIT")
	// A slot freed by QUIT is given to the next client.
	var code int
	for i := 0; i < 50; i++ {
		c := dial(t, ts.addr)
		if code, _ = c.reply(); code == 220 {
			c.cmd(250, "EHLO again.example")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 220 {
		t.Fatalf("slot was not released: %d", code)
	}
}

func TestShutdownClosesIdleSessions(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.greet()
	done := make(chan error, 1)
	go func() {
		done <- ts.srv.Shutdown(t.Context())
	}()
	if code, text := c.reply(); code != 421 || !strings.HasPrefix(text, "4.3.2") {
		t.Errorf("idle session at shutdown: got %d %s, want 421 4.3.2", code, text)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not return with only an idle session open")
	}
}

func TestShutdownFinishesOpenTransaction(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.addr)
	c.greet()
	c.cmd(250, "MAIL FROM:<a@origin.example>")
	c.cmd(250, "RCPT TO:<fbl@test.example>")
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(t.Context()) }()
	time.Sleep(200 * time.Millisecond)
	c.cmd(354, "DATA")
	c.send("Subject: in flight\r\n\r\nx\r\n.\r\n")
	if code, text := c.reply(); code != 250 {
		t.Fatalf("transaction open at shutdown: got %d %s", code, text)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := ts.count(t); n != 1 {
		t.Errorf("stored %d, want 1", n)
	}
}

func TestRouter(t *testing.T) {
	cfg, err := config.Parse([]byte(testConfig), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := NewRouter(cfg.Channels)
	for addr, want := range map[string]string{
		"fbl@test.example":         "fbl",
		"FBL@Test.Example":         "fbl",
		"fbl@test.example.":        "fbl",
		"anyone@trap.test.example": "trap",
		"x@TRAP.test.example":      "trap",
		"x@sub.trap.test.example":  "",
		"other@test.example":       "",
		"fbl@test.example@evil":    "",
		"":                         "",
		"@trap.test.example":       "",
	} {
		got := ""
		if ch := r.Route(addr); ch != nil {
			got = ch.Name
		}
		if got != want {
			t.Errorf("Route(%q) = %q, want %q", addr, got, want)
		}
	}
}
