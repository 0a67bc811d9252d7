package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/internal/leakcheck"
	"github.com/xarfd/xarfd/internal/mailpittest"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/xarf"
)

// Public addresses that belong to nobody: 192.88.99.0/24 was the 6to4
// relay anycast prefix (deprecated by RFC 7526). Nothing leaves
// 127.0.0.1: the test DNS points the desk's MX at 127.0.0.1.
const (
	e2eOrigin  = "192.88.99.10"
	e2eOrigin2 = "192.88.99.11"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type mailpit struct{ smtp, api string }

// startMailpit runs the abuse desk (internal/mailpittest).
func startMailpit(t *testing.T) *mailpit {
	t.Helper()
	m := mailpittest.Start(t)
	return &mailpit{smtp: m.SMTP, api: m.API}
}

type mailpitMsg struct {
	ID        string
	MessageID string
	To        []struct{ Address string }
}

func (m *mailpit) messages(t *testing.T) []mailpitMsg {
	t.Helper()
	resp, err := http.Get("http://" + m.api + "/api/v1/messages?limit=500")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct{ Messages []mailpitMsg }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	return page.Messages
}

func (m *mailpit) raw(t *testing.T, id string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + m.api + "/api/v1/message/" + id + "/raw")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// testDNS is an authoritative server on 127.0.0.1 for TXT, MX and A.
type testDNS struct {
	addr string
	mu   sync.Mutex
	rrs  map[string][]dns.RR
}

func startTestDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{rrs: map[string][]dns.RR{}}
	// UDP and TCP on one port: the UDP port the kernel picks may be in
	// use for TCP by someone else, so try a few.
	var pc net.PacketConn
	var tl net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		d.addr = pc.LocalAddr().String()
		if tl, err = net.Listen("tcp", d.addr); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		d.mu.Lock()
		rrs, ok := d.rrs[strings.ToLower(q.Name)]
		d.mu.Unlock()
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: tl, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return d
}

func (d *testDNS) add(t *testing.T, rr string) {
	t.Helper()
	r, err := dns.NewRR(rr)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := strings.ToLower(r.Header().Name)
	d.rrs[n] = append(d.rrs[n], r)
}

func (d *testDNS) lookupTXT(name string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, rr := range d.rrs[strings.ToLower(dns.Fqdn(name))] {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out, nil
}

// dkimKey writes an RSA key to dir and publishes it in d.
func dkimKey(t *testing.T, d *testDNS, dir, selector, domain string) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dkim.pem")
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	rec := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	// TXT strings are at most 255 bytes: split.
	var parts []string
	for len(rec) > 200 {
		parts = append(parts, fmt.Sprintf("%q", rec[:200]))
		rec = rec[200:]
	}
	parts = append(parts, fmt.Sprintf("%q", rec))
	d.add(t, selector+"._domainkey."+domain+". 60 IN TXT "+strings.Join(parts, " "))
	return path
}

// spamHit is spam forwarded to us over loopback: the Received hop
// names the origin.
func spamHit(origin, to, subject, body string) []byte {
	return []byte("Received: from spam.example (spam.example [" + origin + "]) by mx.e2e.example with ESMTP id x1; Fri, 27 Nov 2026 10:00:00 +0000\r\n" +
		"From: Spammer <spammer@spam.example>\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@spam.example>\r\n\r\n" + body + "\r\nunsubscribe: http://spam.example/u?e=" + to + "\r\n")
}

func fblMessage(t *testing.T, origin string) []byte {
	t.Helper()
	orig := spamHit(origin, "complainer@mailbox.example", "weight loss", "complaint body")
	b, err := arf.Build(arf.BuildRequest{
		From: "fbl@mailbox.example", To: "fbl@e2e.example", Subject: "FW: weight loss", MessageID: "<fbl1@mailbox.example>", Date: time.Now(),
		Feedback: &arf.Report{FeedbackType: "abuse", SourceIP: &arf.IP{Raw: origin, Addr: netip.MustParseAddr(origin)}, ArrivalDate: &arf.Date{Time: time.Now()}, OriginalRcptTo: []string{"complainer@mailbox.example"}},
		Original: orig,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type outboxPage struct{ Entries []store.OutboxEntry }

func outbox(t *testing.T, base string) []store.OutboxEntry {
	t.Helper()
	r := apiDo(t, "GET", base+"/api/v1/outbox", "", "", nil)
	if r.code != 200 {
		t.Fatalf("outbox: %d %s", r.code, r.body)
	}
	var p outboxPage
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p.Entries
}

func countStatus(es []store.OutboxEntry) map[store.OutboxStatus]int {
	n := map[store.OutboxStatus]int{}
	for _, e := range es {
		n[e.Status]++
	}
	return n
}

const reporterConfig = `
hostname: mx.e2e.example
resolver: %q
sender: {org: E2E Net, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@e2e.example"]
    redact: {recipients: true}
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
    redact: {recipients: true}
reporter:
  enabled: true
  from: reports@reports.e2e.example
  format: %s
  dkim: {domain: reports.e2e.example, selector: e2e, private_key_file: %q}
  retry: {first: 1s, give_up_after: 1h}
contacts:
  dns_zones: ["abuse.e2e.example"]
own_networks: ["192.88.99.128/25"]
`

// TestReporterEndToEnd: the real binary receives trap mail and an ARF
// report, finds the contact in a DNS zone, and delivers DKIM-signed
// XARF reports to the desk's MX (Mailpit) — one per incident, valid
// against the official schema, without any redacted address.
func TestReporterEndToEnd(t *testing.T) {
	shared := sharedDir(t)
	validator, err := xarf.NewValidator(filepath.Join(shared, "xarf", "xarf-spec", "schemas", "v4"))
	if err != nil {
		t.Fatal(err)
	}
	mp := startMailpit(t)
	d := startTestDNS(t)
	d.add(t, "10.99.88.192.abuse.e2e.example. 60 IN TXT \"abuse@desk.e2e.example\"")
	d.add(t, "desk.e2e.example. 60 IN MX 10 mx.desk.e2e.example.")
	d.add(t, "mx.desk.e2e.example. 60 IN A 127.0.0.1")
	dir := t.TempDir()
	key := dkimKey(t, d, dir, "e2e", "reports.e2e.example")
	_, mpPort, _ := net.SplitHostPort(mp.smtp)
	t.Setenv("XARFD_TEST_MX_PORT", mpPort)
	cfg := writeConfig(t, dir, fmt.Sprintf(reporterConfig, d.addr, "xarf", key))
	dm := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, dm)

	trapRcpts := []string{"alice.trap@trap.e2e.example", "bob.trap@trap.e2e.example"}
	// One spam to two trap addresses: one incident.
	if _, err := send(dm.addr, "bounce@spam.example", trapRcpts[:1], spamHit(e2eOrigin, trapRcpts[0], "cheap pills", "buy now")); err != nil {
		t.Fatal(err)
	}
	if _, err := send(dm.addr, "bounce@spam.example", trapRcpts[1:], spamHit(e2eOrigin, trapRcpts[1], "cheap pills", "buy now")); err != nil {
		t.Fatal(err)
	}
	// A private and an own-network source: stored, never sent.
	for _, o := range []string{"10.1.2.3", "192.88.99.200"} {
		if _, err := send(dm.addr, "bounce@spam.example", trapRcpts[:1], spamHit(o, trapRcpts[0], "other", o)); err != nil {
			t.Fatal(err)
		}
	}
	// An FBL complaint about the same network.
	if _, err := send(dm.addr, "fbl@mailbox.example", []string{"fbl@e2e.example"}, fblMessage(t, e2eOrigin)); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(60 * time.Second)
	var entries []store.OutboxEntry
	for {
		entries = outbox(t, base)
		n := countStatus(entries)
		if n[store.OutboxSent] == 2 && n[store.OutboxDuplicate] == 1 && n[store.OutboxWithheld] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox did not settle: %v\n%+v", n, entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
	msgs := mp.messages(t)
	if len(msgs) != 2 {
		t.Fatalf("desk got %d messages, want 2 (one per incident)", len(msgs))
	}
	redacted := append(trapRcpts, "complainer@mailbox.example")
	for _, m := range msgs {
		if len(m.To) != 1 || m.To[0].Address != "abuse@desk.e2e.example" {
			t.Errorf("recipient %+v", m.To)
		}
		raw := mp.raw(t, m.ID)
		verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: d.lookupTXT})
		if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != "reports.e2e.example" {
			t.Errorf("DKIM: %v %+v", err, verifs)
		}
		for _, h := range []string{"Auto-Submitted: auto-generated", "Feedback-Type: xarf", "Source-IP: " + e2eOrigin} {
			if !bytes.Contains(raw, []byte(h)) {
				t.Errorf("message lacks %q", h)
			}
		}
		doc := xarfAttachment(t, raw)
		if err := validator.Check(doc); err != nil {
			t.Errorf("xarf.json: %v", err)
		}
		leakcheck.Check(t, raw, redacted)
	}
	for _, e := range entries {
		if e.Status == store.OutboxWithheld && !strings.Contains(e.Reason, "private") && !strings.Contains(e.Reason, "own_networks") {
			t.Errorf("withheld for %q", e.Reason)
		}
		if e.Status == store.OutboxSent && (e.Contact != "abuse@desk.e2e.example" || e.ContactSource != "dns:abuse.e2e.example") {
			t.Errorf("sent entry %+v", e)
		}
	}
	dm.stop()
}

func xarfAttachment(t *testing.T, raw []byte) []byte {
	t.Helper()
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := p.Header.(*mail.AttachmentHeader); ok {
			if name, _ := h.Filename(); name == "xarf.json" {
				if ct, _, _ := h.ContentType(); ct != "application/json" {
					t.Errorf("xarf.json is %s", ct)
				}
				b, _ := io.ReadAll(p.Body)
				return b
			}
		}
	}
	t.Fatal("no xarf.json attachment")
	return nil
}

// gateDesk is an abuse desk (go-smtp, in the test process) that accepts
// the first `open` messages and then holds every RCPT until released.
type gateDesk struct {
	mu      sync.Mutex
	got     map[string]int // Message-ID -> copies
	open    int
	held    chan struct{}
	release chan struct{}
}

func (g *gateDesk) NewSession(*smtp.Conn) (smtp.Session, error) { return &gateSession{g: g}, nil }

type gateSession struct{ g *gateDesk }

func (s *gateSession) Reset()                               {}
func (s *gateSession) Logout() error                        { return nil }
func (s *gateSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *gateSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.g.mu.Lock()
	n := 0
	for _, c := range s.g.got {
		n += c
	}
	open := s.g.open
	s.g.mu.Unlock()
	if n >= open {
		select {
		case s.g.held <- struct{}{}:
		default:
		}
		<-s.g.release
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "closing"}
	}
	return nil
}
func (s *gateSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	m, err := mail.CreateReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	id := m.Header.Get("Message-Id")
	s.g.mu.Lock()
	s.g.got[id]++
	s.g.mu.Unlock()
	return nil
}

// TestReporterSIGKILLDeliversExactlyOnce kills the daemon while
// deliveries are in flight; after the restart every report reaches the
// desk exactly once.
func TestReporterSIGKILLDeliversExactlyOnce(t *testing.T) {
	g := &gateDesk{got: map[string]int{}, open: 3, held: make(chan struct{}, 1), release: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(g)
	srv.Domain = "desk.e2e.example"
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	yaml := strings.Replace(baseConfig, "redact: {recipients: true}", "redact: {recipients: true}\n", 1) + fmt.Sprintf(`
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1s, give_up_after: 1h}
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@desk.e2e.example}]
`, l.Addr().String())
	cfg := writeConfig(t, dir, yaml)
	dm := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, dm)
	const n = 8
	for i := range n {
		body := spamHit(e2eOrigin2, "t@trap.e2e.example", fmt.Sprintf("spam %d", i), fmt.Sprintf("distinct body %d", i))
		if _, err := send(dm.addr, "bounce@spam.example", []string{"t@trap.e2e.example"}, body); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until three are recorded sent and a fourth is held at RCPT.
	deadline := time.Now().Add(60 * time.Second)
	for countStatus(outbox(t, base))[store.OutboxSent] < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("not 3 sent: %+v", outbox(t, base))
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-g.held:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery held at the desk")
	}
	dm.kill()
	g.mu.Lock()
	g.open = 1 << 30
	g.mu.Unlock()
	close(g.release)

	dm2 := startDaemon(t, dir, "-config", cfg)
	base2 := httpAddr(t, dm2)
	deadline = time.Now().Add(60 * time.Second)
	for countStatus(outbox(t, base2))[store.OutboxSent] < n {
		if time.Now().After(deadline) {
			t.Fatalf("not all sent after restart: %+v", outbox(t, base2))
		}
		time.Sleep(50 * time.Millisecond)
	}
	dm2.stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.got) != n {
		t.Fatalf("desk got %d distinct reports, want %d", len(g.got), n)
	}
	for id, c := range g.got {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	if !strings.Contains(dm2.logs.String(), "resuming a delivery interrupted by a stop") {
		t.Error("the restart resumed nothing: the kill did not hit a delivery in flight")
	}
}
