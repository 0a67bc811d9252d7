package smtpd

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// replyCounts reads xarfd_smtp_replies_total by code from the server's
// registry.
func replyCounts(t *testing.T, ts *testServer) map[string]float64 {
	t.Helper()
	mfs, err := ts.srv.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "xarfd_smtp_replies_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}

// Every reply a session decides is counted once: a refused recipient is
// not counted again when its transaction is logged at RSET or at the
// next MAIL, and the final reply to DATA once.
func TestReplyCountedOnce(t *testing.T) {
	ts := startServer(t, nil)
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantCode := func(err error, code int) {
		t.Helper()
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != code {
			t.Fatalf("got %v, want %d", err, code)
		}
	}
	if err := c.Hello("client.test.example"); err != nil {
		t.Fatal(err)
	}

	// 1: one recipient refused, one accepted, DATA stored: 550 and 250.
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(c.Rcpt("nobody@elsewhere.example", nil), 550)
	if err := c.Rcpt("fbl@test.example", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// 2: every recipient refused, then RSET: two 550s, logged at RSET.
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(c.Rcpt("nobody@elsewhere.example", nil), 550)
	wantCode(c.Rcpt("partner@test.example", nil), 550) // 127.0.0.1 is not its network
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}

	// 3: a refused recipient, ended by the next MAIL.
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(c.Rcpt("nobody@elsewhere.example", nil), 550)
	if err := c.Mail("sender@example.org", nil); err != nil {
		t.Fatal(err)
	}
	// Each reply above was read before the next command was sent, and
	// the session counts before it answers: nothing is still on its way.
	got := replyCounts(t, ts)
	want := map[string]float64{"550": 4, "250": 1}
	if len(got) != len(want) || got["550"] != want["550"] || got["250"] != want["250"] {
		t.Errorf("xarfd_smtp_replies_total = %v, want %v", got, want)
	}
	if n := strings.Count(ts.logs.String(), `"message":"smtp transaction"`); n != 3 {
		t.Errorf("%d transaction log lines, want 3 (one per ended transaction)", n)
	}
}
