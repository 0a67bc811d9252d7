package smtpd

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/xarfd/xarfd/auth/authtest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/mailauth/mailauthtest"
	"github.com/xarfd/xarfd/store"
)

// authWorld is a server with TLS, two SMTP AUTH users with a channel
// each, a channel that requires DKIM of reporter.example, and a DNS
// server on 127.0.0.1 that publishes reporter.example's key and SPF.
type authWorld struct {
	*testServer
	dns   *mailauthtest.DNS
	key   *mailauthtest.DKIMKey // reporter.example, published
	sub   *mailauthtest.DKIMKey // mail.reporter.example, published
	wrong *mailauthtest.DKIMKey // elsewhere.example, published
	slow  *mailauthtest.DKIMKey // reporter.example, its lookup hangs
}

const authConfig = `
hostname: mx.test.example
resolver: %q
sender: {org: Test, contact: abuse@test.example, domain: test.example}
smtp:
  tls: {cert_file: %q, key_file: %q}
  auth_file: %q
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@test.example"]
  - name: trap
    kind: trap
    addresses: ["*@trap.test.example"]
    redact: {recipients: true}
  - name: p1
    kind: arf
    addresses: ["p1@test.example"]
    accept_from: {users: [partner1]}
  - name: p2
    kind: arf
    addresses: ["p2@test.example"]
    accept_from: {users: [partner2]}
  - name: signed
    kind: arf
    addresses: ["signed@test.example"]
    accept_from: {dkim_domains: [reporter.example]}
  - name: signed-trap
    kind: trap
    addresses: ["*@signed-trap.test.example"]
    accept_from: {dkim_domains: [reporter.example]}
    redact: {recipients: true}
`

func hashOf(t testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func startAuthWorld(t *testing.T, srvTweak func(*Server)) *authWorld {
	t.Helper()
	dir := t.TempDir()
	cert, key := authtest.Cert(t, dir)
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("partner1:"+hashOf(t, "pw one")+"\npartner2:"+hashOf(t, "pw two")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &authWorld{
		dns:   mailauthtest.StartDNS(t),
		key:   mailauthtest.NewDKIMKey(t, "reporter.example", "s1"),
		sub:   mailauthtest.NewDKIMKey(t, "mail.reporter.example", "s2"),
		wrong: mailauthtest.NewDKIMKey(t, "elsewhere.example", "s1"),
		slow:  mailauthtest.NewDKIMKey(t, "reporter.example", "slow"),
	}
	w.key.Publish(t, w.dns)
	w.sub.Publish(t, w.dns)
	w.wrong.Publish(t, w.dns)
	w.dns.Hang("slow._domainkey.reporter.example")
	w.dns.TXT("reporter.example", "v=spf1 ip4:127.0.0.1 -all")
	yaml := fmt.Sprintf(authConfig, w.dns.Addr, cert, key, users)
	w.testServer = startServerWith(t, yaml, nil, func(s *Server) {
		s.checker.CheckLocalPeers = true
		s.checker.Timeout = 2 * time.Second
		if srvTweak != nil {
			srvTweak(s)
		}
	})
	return w
}

// tlsClient connects with go-smtp's client and STARTTLS.
func tlsClient(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, authtest.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func smtpCode(err error) (int, string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return 0, ""
	}
	return -1, err.Error()
}

func wantCode(t *testing.T, what string, err error, code int, enh string) {
	t.Helper()
	if c, e := smtpCode(err); c != code || e != enh {
		t.Fatalf("%s: got %d %s (%v), want %d %s", what, c, e, err, code, enh)
	}
}

// send runs MAIL, RCPT and DATA on c and returns the DATA reply's text.
func send(t *testing.T, c *smtp.Client, from string, rcpts []string, body []byte) (string, error) {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	w.Write(body)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

func (ts *testServer) only(t *testing.T, text string) (*store.Message, []byte) {
	t.Helper()
	ids := queuedIDs(t, text)
	if len(ids) != 1 {
		t.Fatalf("want one id: %q", text)
	}
	m, err := ts.store.Message(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ts.store.Raw(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	return m, raw
}

// arField returns the unfolded Authentication-Results field of a stored
// message (on top, or below X-Xarfd-Redacted on a redacting channel).
func arField(raw []byte) string {
	i := bytes.Index(raw, []byte("Authentication-Results: "))
	if i < 0 {
		return ""
	}
	var b strings.Builder
	for i, l := range strings.SplitAfter(string(raw[i:]), "\n") {
		if i > 0 && !strings.HasPrefix(l, "\t") {
			break
		}
		b.WriteString(l)
	}
	f := strings.ReplaceAll(b.String(), "\r\n\t", " ")
	return strings.TrimRight(strings.ReplaceAll(f, "\n\t", " "), "\r\n")
}

const report = "From: fbl@reporter.example\r\nTo: fbl@test.example\r\nSubject: complaint\r\nMessage-ID: <1@reporter.example>\r\n\r\nspam complaint body\r\n"

func TestAuthNotOfferedInClear(t *testing.T) {
	w := startAuthWorld(t, nil)
	c := dial(t, w.addr)
	if code, _ := c.reply(); code != 220 {
		t.Fatal(code)
	}
	c.send("EHLO client.test.example\r\n")
	var ehlo strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		ehlo.WriteString(line)
		if line[3] == ' ' {
			break
		}
	}
	if strings.Contains(ehlo.String(), "AUTH") || !strings.Contains(ehlo.String(), "STARTTLS") {
		t.Errorf("EHLO in clear:\n%s", ehlo.String())
	}
	// go-smtp refuses AUTH in clear before it reaches us: 523 5.7.10
	// (the IANA registry's code for "Encryption Needed").
	creds := base64.StdEncoding.EncodeToString([]byte("\x00partner1\x00pw one"))
	if text := c.cmd(523, "AUTH PLAIN "+creds); !strings.HasPrefix(text, "5.7.10 ") {
		t.Errorf("AUTH in clear: %s", text)
	}
	c.cmd(250, "MAIL FROM:<a@reporter.example>")
	if text := c.cmd(530, "RCPT TO:<p1@test.example>"); !strings.HasPrefix(text, "5.7.0 ") {
		t.Errorf("users channel without AUTH: %s", text)
	}
	// Channels without users still take mail from anyone.
	c.cmd(250, "RCPT TO:<fbl@test.example>")
}

func TestAuthOverTLS(t *testing.T) {
	w := startAuthWorld(t, nil)
	c := tlsClient(t, w.addr)
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
		t.Fatalf("AUTH over TLS: %v %q", ok, mechs)
	}
	wantCode(t, "wrong password", c.Auth(sasl.NewPlainClient("", "partner1", "pw two")), 535, "5.7.8")
	wantCode(t, "unknown user", c.Auth(sasl.NewPlainClient("", "nobody", "pw one")), 535, "5.7.8")
	wantCode(t, "acting for another user", c.Auth(sasl.NewPlainClient("partner2", "partner1", "pw one")), 535, "5.7.8")
	// go-smtp's client sends "*" after each failed AUTH, which its server
	// counts as a protocol error (four close the connection): go on in a
	// new one.
	c = tlsClient(t, w.addr)
	if err := c.Auth(sasl.NewPlainClient("", "partner1", "pw one")); err != nil {
		t.Fatalf("right password: %v", err)
	}
	wantCode(t, "second AUTH", c.Auth(sasl.NewPlainClient("", "partner2", "pw two")), 503, "5.5.1")

	if err := c.Mail("bounce@reporter.example", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "another user's channel", c.Rcpt("p2@test.example", nil), 550, "5.7.1")
	if err := c.Rcpt("p1@test.example", nil); err != nil {
		t.Fatalf("own channel: %v", err)
	}
	if err := c.Rcpt("x@trap.test.example", nil); err != nil {
		t.Fatalf("open channel: %v", err)
	}
	d, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte(report))
	resp, err := d.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	ids := queuedIDs(t, resp.StatusText)
	if len(ids) != 2 {
		t.Fatalf("ids %v", ids)
	}
	for _, id := range ids {
		m, err := w.store.Message(id)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := w.store.Raw(id)
		ar := arField(raw)
		if m.Envelope.AuthUser != "partner1" || m.Envelope.TLS == nil {
			t.Errorf("%s envelope %+v", m.Channel, m.Envelope)
		}
		if !strings.Contains(ar, "auth=pass smtp.auth=partner1") || !strings.Contains(ar, "spf=pass smtp.mailfrom=bounce@reporter.example") {
			t.Errorf("%s: Authentication-Results %q", m.Channel, ar)
		}
		if m.Channel == "p1" && !bytes.Equal(stripAR(t, raw), []byte(report)) {
			t.Errorf("stored bytes changed below the header: %q", raw)
		}
		if strings.Contains(ar, "trap.test.example") || strings.Contains(ar, "p1@") {
			t.Errorf("a recipient in Authentication-Results: %q", ar)
		}
	}
}

func TestAuthLogin(t *testing.T) {
	w := startAuthWorld(t, nil)
	c := tlsClient(t, w.addr)
	wantCode(t, "LOGIN, wrong password", c.Auth(sasl.NewLoginClient("partner2", "pw one")), 535, "5.7.8")
	if err := c.Auth(sasl.NewLoginClient("partner2", "pw two")); err != nil {
		t.Fatal(err)
	}
	text, err := send(t, c, "a@reporter.example", []string{"p2@test.example"}, []byte(report))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := w.only(t, text); m.Envelope.AuthUser != "partner2" || m.Channel != "p2" {
		t.Errorf("envelope %+v", m.Envelope)
	}
	// Raw LOGIN with the user name as initial response, over a raw TLS
	// session, is accepted too; AUTH in a transaction is not.
	c2 := tlsClient(t, w.addr)
	if err := c2.Mail("a@reporter.example", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "AUTH inside a transaction", c2.Auth(sasl.NewPlainClient("", "partner1", "pw one")), 503, "5.5.1")
}

func TestAuthFailuresThrottled(t *testing.T) {
	w := startAuthWorld(t, func(s *Server) { s.authFails = newFailLimiter(3, time.Hour, 100) })
	c := tlsClient(t, w.addr)
	for i := range 3 {
		wantCode(t, fmt.Sprintf("failure %d", i+1), c.Auth(sasl.NewPlainClient("", "partner1", "guess")), 535, "5.7.8")
	}
	// The fourth attempt is refused before any password is checked, and
	// the connection is closed.
	wantCode(t, "fourth attempt", c.Auth(sasl.NewPlainClient("", "partner1", "pw one")), 421, "4.7.0")
	if err := c.Noop(); err == nil {
		t.Error("connection still open after 421")
	}
	// A new connection from the same address is refused as well, even
	// with the right password, while other commands still work.
	c2 := tlsClient(t, w.addr)
	wantCode(t, "new connection", c2.Auth(sasl.NewPlainClient("", "partner1", "pw one")), 421, "4.7.0")
	if !strings.Contains(w.logs.String(), "too many failures") || strings.Contains(w.logs.String(), "guess") {
		t.Errorf("log: %s", w.logs.String())
	}
}

func TestFailLimiter(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newFailLimiter(2, time.Minute, 4)
	l.now = func() time.Time { return now }
	a := netip.MustParseAddr("192.0.2.1")
	v6a := netip.MustParseAddr("2001:db8:1:2::1")
	v6b := netip.MustParseAddr("2001:db8:1:2:ffff::9") // same /64
	l.fail(a)
	if l.blocked(a) {
		t.Fatal("blocked after one failure")
	}
	l.fail(a)
	if !l.blocked(a) || l.blocked(netip.MustParseAddr("192.0.2.2")) {
		t.Fatal("limit per address")
	}
	l.fail(v6a)
	l.fail(v6b)
	if !l.blocked(netip.MustParseAddr("2001:db8:1:2::77")) || l.blocked(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("IPv6 is limited per /64")
	}
	if !l.blocked(netip.MustParseAddr("::ffff:192.0.2.1")) {
		t.Error("a v4-mapped address is its IPv4 address")
	}
	now = now.Add(time.Minute)
	if l.blocked(a) {
		t.Error("still blocked after the window")
	}
	// Bounded: a flood of addresses never grows the table past its size,
	// and the newest entries are kept.
	for i := range 1000 {
		now = now.Add(time.Millisecond)
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		l.fail(ip)
		l.fail(ip)
	}
	if n := l.size(); n > 4 {
		t.Errorf("table grew to %d entries", n)
	}
	if !l.blocked(netip.AddrFrom4([4]byte{10, 0, 3, 231})) {
		t.Error("the latest offender was evicted")
	}
}

func TestUnknownUserInChannelRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	cert, key := authtest.Cert(t, dir)
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("partner1:"+hashOf(t, "x")+"\n"), 0o600)
	yaml := fmt.Sprintf(authConfig, "127.0.0.1:1", cert, key, users)
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, nil, zerolog.Nop(), nil)
	if err == nil || !strings.Contains(err.Error(), `channels[3].accept_from.users: "partner2" is not a user of smtp.auth_file`) {
		t.Errorf("New: %v", err)
	}
}

func TestDKIMRequired(t *testing.T) {
	w := startAuthWorld(t, nil)
	signed := w.key.Sign(t, []byte(report))
	tampered := bytes.Replace(signed, []byte("spam complaint"), []byte("spam COMPLAINT"), 1)
	for _, c := range []struct {
		name string
		raw  []byte
		code int
		enh  string
		dkim string // in Authentication-Results on acceptance
	}{
		{"signed", signed, 250, "", "dkim=pass header.d=reporter.example"},
		{"signed by a subdomain", w.sub.Sign(t, []byte(report)), 250, "", "dkim=pass header.d=mail.reporter.example"},
		{"unsigned", []byte(report), 550, "5.7.1", ""},
		{"signed by another domain", w.wrong.Sign(t, []byte(report)), 550, "5.7.1", ""},
		{"body tampered", tampered, 550, "5.7.1", ""},
		{"key lookup times out", w.slow.Sign(t, []byte(report)), 451, "4.4.3", ""},
		{"another domain's signature on top of ours", w.wrong.Sign(t, signed), 250, "", "dkim=pass header.d=reporter.example"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := w.count(t)
			cl := tlsClient(t, w.addr)
			text, err := send(t, cl, "fbl@reporter.example", []string{"signed@test.example"}, c.raw)
			if c.code != 250 {
				wantCode(t, "DATA", err, c.code, c.enh)
				if w.count(t) != before {
					t.Error("a refused message was stored")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, raw := w.only(t, text)
			ar := arField(raw)
			if m.Channel != "signed" || !strings.Contains(ar, c.dkim) || !bytes.Equal(stripAR(t, raw), c.raw) {
				t.Errorf("stored %s with %q", m.Channel, ar)
			}
			if strings.Contains(ar, "signed@test.example") {
				t.Errorf("recipient in %q", ar)
			}
		})
	}
	if !strings.Contains(w.logs.String(), `"dkim":["fail:reporter.example"]`) {
		t.Errorf("the log does not show the DKIM result of the refused message")
	}
}

// A DKIM-requiring channel is decided at the end of DATA, where one reply
// covers all recipients: its recipients never share a transaction with
// another channel's, so refusing never costs another channel a delivery
// and accepting never covers a refused one.
func TestDKIMChannelAloneInTransaction(t *testing.T) {
	w := startAuthWorld(t, nil)
	c := dial(t, w.addr)
	c.greet()
	c.cmd(250, "MAIL FROM:<fbl@reporter.example>")
	c.cmd(250, "RCPT TO:<fbl@test.example>")
	if text := c.cmd(452, "RCPT TO:<signed@test.example>"); !strings.HasPrefix(text, "4.5.3 ") {
		t.Errorf("DKIM channel after another: %s", text)
	}
	c.cmd(250, "RSET")
	c.cmd(250, "MAIL FROM:<fbl@reporter.example>")
	c.cmd(250, "RCPT TO:<signed@test.example>")
	c.cmd(250, "RCPT TO:<SIGNED@test.example>") // the same channel again
	c.cmd(452, "RCPT TO:<fbl@test.example>")
	c.cmd(452, "RCPT TO:<a@signed-trap.test.example>") // another DKIM channel
	c.cmd(354, "DATA")
	c.send(string(w.key.Sign(t, []byte(report))) + ".\r\n")
	code, text := c.reply()
	if code != 250 {
		t.Fatalf("got %d %s", code, text)
	}
	m, _ := w.only(t, text)
	if m.Channel != "signed" || len(m.Envelope.Rcpts) != 2 {
		t.Errorf("stored %+v", m)
	}
	// Unsigned: refused whole, and nothing of it stored.
	c.cmd(250, "MAIL FROM:<fbl@reporter.example>")
	c.cmd(250, "RCPT TO:<x@signed-trap.test.example>")
	c.cmd(250, "RCPT TO:<y@signed-trap.test.example>")
	c.cmd(354, "DATA")
	c.send(report + ".\r\n")
	if code, text := c.reply(); code != 550 || !strings.HasPrefix(text, "5.7.1 ") {
		t.Errorf("unsigned to a DKIM trap: %d %s", code, text)
	}
	if n := w.count(t); n != 1 {
		t.Errorf("stored %d, want 1", n)
	}
}

// Redacting channels: the Authentication-Results header goes through the
// redactor like the rest, and names no recipient to begin with.
func TestAuthResultsOnRedactingChannel(t *testing.T) {
	w := startAuthWorld(t, nil)
	c := tlsClient(t, w.addr)
	text, err := send(t, c, "bounce@reporter.example", []string{"victim@trap.test.example"},
		[]byte("From: spammer@elsewhere.example\r\nTo: victim@trap.test.example\r\nSubject: buy\r\n\r\nhi victim@trap.test.example\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, raw := w.only(t, text)
	if !strings.Contains(string(raw), "Authentication-Results: mx.test.example;") || strings.Contains(string(raw), "victim") {
		t.Errorf("stored %q", raw)
	}
}
