package smtpd

import (
	"bytes"
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/auth/authtest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
)

// TestReload swaps the configuration under an open transaction: the
// transaction finishes with the channels (and redaction) it began with;
// the next transaction, in the same session or a new one, routes by the
// new channels.
func TestReload(t *testing.T) {
	ts := startServer(t, nil)
	c1 := dial(t, ts.addr)
	c1.greet()
	c1.cmd(250, "MAIL FROM:<spammer@origin.example>")
	c1.cmd(250, "RCPT TO:<victim@trap.test.example>")

	// The new file: fbl is gone, trap no longer redacts, fresh is new.
	next := strings.Replace(testConfig, `  - name: fbl
    kind: arf
    addresses: ["fbl@test.example"]
`, `  - name: fresh
    kind: arf
    addresses: ["fresh@test.example"]
`, 1)
	next = strings.Replace(next, "    redact: {recipients: true}\n", "", 1)
	cfg, err := config.Parse([]byte(next), "next.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, ts.store, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Reload(cfg, in, nil, nil); err != nil {
		t.Fatal(err)
	}

	c1.cmd(354, "DATA")
	c1.send("Subject: hit\r\nTo: victim@trap.test.example\r\n\r\nfor victim@trap.test.example\r\n.\r\n")
	code, text := c1.reply()
	if code != 250 {
		t.Fatalf("transaction open across the reload: %d %s", code, text)
	}
	m, raw := ts.only(t, text)
	if m.Channel != "trap" || bytes.Contains(raw, []byte("victim@trap.test.example")) {
		t.Errorf("transaction begun before the reload was not stored under the old redacting channel: channel %s\n%s", m.Channel, raw)
	}

	// The same session's next transaction sees the new channels.
	c1.cmd(250, "MAIL FROM:<spammer@origin.example>")
	c1.cmd(550, "RCPT TO:<fbl@test.example>")
	c1.cmd(250, "RCPT TO:<fresh@test.example>")
	c1.cmd(250, "RSET")
	c1.cmd(221, "QUIT")

	// And so does a new session, and its trap mail is no longer redacted.
	c2 := dial(t, ts.addr)
	c2.greet()
	code, text = c2.message("spammer@origin.example", []string{"victim@trap.test.example"},
		"Subject: hit\r\nTo: victim@trap.test.example\r\n\r\nx")
	if code != 250 {
		t.Fatalf("after reload: %d %s", code, text)
	}
	if _, raw := ts.only(t, text); !bytes.Contains(raw, []byte("victim@trap.test.example")) {
		t.Errorf("a transaction after the reload still used the old redaction:\n%s", raw)
	}
	c2.cmd(221, "QUIT")
}

// TestReloadRenewsCertificate: after a reload with a new certificate the
// next STARTTLS handshake presents it.
func TestReloadRenewsCertificate(t *testing.T) {
	w := startAuthWorld(t, nil)
	serial := func() string {
		c := dial(t, w.addr)
		c.greet()
		c.cmd(220, "STARTTLS")
		tc := tls.Client(c.conn, authtest.ClientTLS())
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	certFile, keyFile := authtest.Cert(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	rt := w.srv.rt.Load()
	if err := w.srv.Reload(w.srv.cfg, rt.ingest, rt.users, &cert); err != nil {
		t.Fatal(err)
	}
	if after := serial(); after == before {
		t.Errorf("the handshake after the reload still presents certificate %s", before)
	}
}

// TestReloadMovesReserve: the reserved connections follow the channels'
// accept_from.networks of the configuration in force, so that a feed
// whose network a reload names is served while strangers fill
// max_connections, and one a reload removed no longer takes the reserve.
func TestReloadMovesReserve(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.SMTP.MaxConnections, c.SMTP.ReservedConnections = 1, 1 })
	next := strings.Replace(testConfig, `accept_from: {networks: ["192.0.2.0/24"]}`, `accept_from: {networks: ["198.51.100.0/24"]}`, 1)
	cfg, err := config.Parse([]byte(next), "next.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, ts.store, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Reload(cfg, in, nil, nil); err != nil {
		t.Fatal(err)
	}
	l := ts.srv.lim.Load().conns
	release, why := l.admit(netip.MustParseAddr("203.0.113.9")) // a stranger fills max_connections
	if why != "" {
		t.Fatalf("first connection refused: %s", why)
	}
	defer release()
	if rel, why := l.admit(netip.MustParseAddr("192.0.2.7")); why != refusedTotal {
		t.Errorf("a network the reload removed took the reserve (refused %q)", why)
		rel()
	}
	if rel, why := l.admit(netip.MustParseAddr("198.51.100.7")); why != "" {
		t.Errorf("a network the reload added was refused the reserve: %s", why)
	} else {
		rel()
	}
}
