package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/auth/authtest"
	"github.com/xarfd/xarfd/mailauth/mailauthtest"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
)

const (
	authFeeder = "e2e-auth-feeder-token"
	authReader = "e2e-auth-reader-token"
)

// authConfigE2E: a channel only partner1 may feed (SMTP AUTH over TLS),
// one that requires DKIM of reporter.example, an open trap; HTTP tokens
// of which the feeder may submit to the partners channel only.
const authConfigE2E = `
hostname: mx.e2e.example
data_dir: %q
resolver: %q
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
smtp:
  listen: ["127.0.0.1:0"]
  tls: {cert_file: %q, key_file: %q}
  auth_file: %q
http:
  listen: "127.0.0.1:0"
  tokens:
    - {name: feeder, sha256: %q, scopes: [submit], channels: [partners]}
    - {name: reader, sha256: %q, scopes: [read]}
channels:
  - name: partners
    kind: arf
    addresses: ["partner@e2e.example"]
    accept_from: {users: [partner1]}
  - name: signed
    kind: arf
    addresses: ["fbl@e2e.example"]
    accept_from: {dkim_domains: [reporter.example]}
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
    redact: {recipients: true}
`

const authMsg = "From: fbl@reporter.example\r\nTo: fbl@e2e.example\r\nSubject: complaint\r\nMessage-ID: <e2e-1@reporter.example>\r\n\r\nA complaint.\r\n"

func smtpErr(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func sendVia(t *testing.T, c *smtp.Client, rcpt string, body []byte) (string, error) {
	t.Helper()
	if err := c.Mail("bounce@reporter.example", nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		c.Reset()
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	w.Write(body)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_, ids, _ := strings.Cut(resp.StatusText, "queued as ")
	return ids, nil
}

func TestAuthOverRealBinary(t *testing.T) {
	dir := t.TempDir()
	cert, key := authtest.Cert(t, dir)
	users, err := os.ReadFile("../auth/testdata/users")
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users")
	if err := os.WriteFile(usersFile, users, 0o600); err != nil {
		t.Fatal(err)
	}
	dns := mailauthtest.StartDNS(t)
	dkimKey := mailauthtest.NewDKIMKey(t, "reporter.example", "e2e")
	dkimKey.Publish(t, dns)
	other := mailauthtest.NewDKIMKey(t, "elsewhere.example", "e2e")
	other.Publish(t, dns)

	dataDir := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "xarfd.yaml")
	yaml := fmt.Sprintf(authConfigE2E, dataDir, dns.Addr, cert, key, usersFile, hashHex(authFeeder), hashHex(authReader))
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, d)

	// In clear: no AUTH advertised, AUTH refused, the partners channel
	// asks for authentication.
	plain, err := smtp.Dial(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Hello("client.e2e.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := plain.Extension("AUTH"); ok {
		t.Error("AUTH advertised on a plain connection")
	}
	if got := smtpErr(plain.Auth(sasl.NewPlainClient("", "partner1", "correct horse"))); got != "523 5.7.10" {
		t.Errorf("AUTH in clear: %s", got)
	}
	plain.Close()

	c, err := smtp.DialStartTLS(d.addr, authtest.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sendVia(t, c, "partner@e2e.example", []byte(authMsg)); smtpErr(err) != "530 5.7.0" {
		t.Errorf("unauthenticated over TLS: %s", smtpErr(err))
	}
	if got := smtpErr(c.Auth(sasl.NewPlainClient("", "partner1", "battery staple"))); got != "535 5.7.8" {
		t.Errorf("wrong password: %s", got)
	}
	c.Close()

	c, err = smtp.DialStartTLS(d.addr, authtest.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "partner1", "correct horse")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	partnerID, err := sendVia(t, c, "partner@e2e.example", []byte(authMsg))
	if err != nil {
		t.Fatalf("authenticated to its channel: %v", err)
	}
	signedID, err := sendVia(t, c, "fbl@e2e.example", dkimKey.Sign(t, []byte(authMsg)))
	if err != nil {
		t.Fatalf("DKIM-signed: %v", err)
	}
	if _, err := sendVia(t, c, "fbl@e2e.example", []byte(authMsg)); smtpErr(err) != "550 5.7.1" {
		t.Errorf("unsigned to the DKIM channel: %s", smtpErr(err))
	}
	if _, err := sendVia(t, c, "fbl@e2e.example", other.Sign(t, []byte(authMsg))); smtpErr(err) != "550 5.7.1" {
		t.Errorf("wrong domain's signature: %s", smtpErr(err))
	}
	c.Quit()

	// HTTP: the feeder token may submit to the partners channel only.
	url := base + "/api/v1/channels/%s/messages?rcpt=partner@e2e.example"
	if r := apiDo(t, "POST", fmt.Sprintf(url, "partners"), authFeeder, "message/rfc822", []byte(authMsg)); r.code != 202 {
		t.Errorf("feeder to its channel: %d %s", r.code, r.body)
	}
	for _, ch := range []string{"signed", "trap"} {
		if r := apiDo(t, "POST", fmt.Sprintf(url, ch), authFeeder, "message/rfc822", []byte(authMsg)); r.code != 403 {
			t.Errorf("feeder to %s: %d %s", ch, r.code, r.body)
		}
	}
	if r := apiDo(t, "POST", fmt.Sprintf(url, "partners"), authReader, "message/rfc822", []byte(authMsg)); r.code != 403 {
		t.Errorf("reader submits: %d %s", r.code, r.body)
	}

	d.stop()
	st := storetest.Open(t, dataDir)
	for _, c := range []struct{ id, channel, user, ar string }{
		{partnerID, "partners", "partner1", "auth=pass smtp.auth=partner1;"},
		{signedID, "signed", "partner1", "dkim=pass header.d=reporter.example header.i=@reporter.example;"},
	} {
		var id store.ID
		if err := id.UnmarshalText([]byte(c.id)); err != nil {
			t.Fatalf("id %q: %v", c.id, err)
		}
		m, err := st.Message(id)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := st.Raw(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Channel != c.channel || m.Envelope.AuthUser != c.user || m.Envelope.TLS == nil {
			t.Errorf("%s: %+v", c.id, m)
		}
		if !strings.HasPrefix(string(raw), "Authentication-Results: mx.e2e.example;\r\n") || !strings.Contains(string(raw), c.ar) {
			t.Errorf("%s: stored %q", c.channel, raw)
		}
		if c.channel == "partners" && string(withoutAuthResults(raw)) != authMsg {
			t.Errorf("stored bytes below the header differ: %q", raw)
		}
	}
	n, err := st.Count()
	if err != nil || n != 3 { // two over SMTP, one over HTTP
		t.Errorf("stored %d messages (%v), want 3", n, err)
	}
}

// withoutAuthResults returns a stored message without the
// Authentication-Results field smtpd puts on top of every message it
// receives: what remains is the message as received, byte for byte.
func withoutAuthResults(raw []byte) []byte {
	if !bytes.HasPrefix(raw, []byte("Authentication-Results: ")) {
		return raw
	}
	rest := raw
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return raw
		}
		rest = rest[i+1:]
		if len(rest) == 0 || rest[0] != '\t' {
			return rest
		}
	}
}
