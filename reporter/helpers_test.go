package reporter

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
)

// desk is an in-process abuse desk: a go-smtp server on 127.0.0.1 whose
// answer to each DATA is decided by answer (nil: accept).
type desk struct {
	addr   string
	mu     sync.Mutex
	got    []deskMsg
	calls  int
	answer func(call int) error
	// inspect, when set (under mu), answers each DATA from its bytes
	// before answer is asked.
	inspect func(data []byte) error
	srv     *smtp.Server
}

type deskMsg struct {
	From string
	To   []string
	Data []byte
}

func (d *desk) NewSession(*smtp.Conn) (smtp.Session, error) { return &deskSession{d: d}, nil }

type deskSession struct {
	d    *desk
	from string
	to   []string
}

func (s *deskSession) Reset()        { s.from, s.to = "", nil }
func (s *deskSession) Logout() error { return nil }
func (s *deskSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *deskSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "unknown@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *deskSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	s.d.calls++
	if s.d.inspect != nil {
		if err := s.d.inspect(b); err != nil {
			return err
		}
	}
	if s.d.answer != nil {
		if err := s.d.answer(s.d.calls); err != nil {
			return err
		}
	}
	s.d.got = append(s.d.got, deskMsg{From: s.from, To: s.to, Data: b})
	return nil
}

func (d *desk) messages() []deskMsg {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]deskMsg(nil), d.got...)
}

func startDesk(t *testing.T, answer func(call int) error) *desk {
	t.Helper()
	d := &desk{answer: answer}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = l.Addr().String()
	d.srv = smtp.NewServer(d)
	d.srv.Domain = "desk.test"
	d.srv.AllowInsecureAuth = true
	go d.srv.Serve(l)
	t.Cleanup(func() { d.srv.Close() })
	return d
}

// Public addresses that belong to nobody: 192.88.99.0/24 was the 6to4
// relay anycast prefix, deprecated by RFC 7526 and unassigned since.
const (
	originNet = "192.88.99.0/24"
	originIP  = "192.88.99.10"
)

type env struct {
	cfg *config.Config
	st  *store.Store
	in  *ingest.Ingester
	rep *Reporter
}

// setup builds a store, an ingester and a reporter from yaml (appended to
// a base with a trap channel and a static contact for originNet).
func setup(t *testing.T, yaml string, opt Options) *env {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`
hostname: reporter.test
sender: {org: Test Net, contact: abuse@reporter.test, domain: reporter.test}
contacts:
  static: [{network: "`+originNet+`", email: abuse@origin.test}]
`+yaml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := storetest.Open(t, dir)
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opt.Logger = zerolog.New(zerolog.NewTestWriter(t))
	if opt.Metrics == nil {
		opt.Metrics = metrics.New()
	}
	opt.Poll = 20 * time.Millisecond
	rep, err := New(cfg, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	return &env{cfg: cfg, st: st, in: in, rep: rep}
}

// trapHit ingests one trap message from ip to channel's rcpt and returns
// the report id.
func (e *env) trapHit(t *testing.T, channel, rcpt, ip, body string) store.ID {
	t.Helper()
	var ch *config.Channel
	for i := range e.cfg.Channels {
		if e.cfg.Channels[i].Name == channel {
			ch = &e.cfg.Channels[i]
		}
	}
	msg := fmt.Sprintf("Received: from spam.example (spam.example [%s]) by mx.reporter.test with ESMTP; Fri, 27 Nov 2026 10:00:00 +0000\r\n"+
		"From: Spammer <spammer@spam.example>\r\nTo: %s\r\nSubject: cheap pills\r\nMessage-ID: <%d@spam.example>\r\n\r\n%s\r\n", ip, rcpt, time.Now().UnixNano(), body)
	res, err := e.in.Accept(store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), PeerPort: 40000, MailFrom: "bounce@spam.example", Via: "smtp"},
		[]ingest.Delivery{{Channel: ch, Rcpts: []string{rcpt}}}, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Report {
		t.Fatalf("no report: %s", res[0].Reason)
	}
	return res[0].ID
}

// run runs the reporter until cond holds or 20 s pass.
func (e *env) run(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		e.rep.Run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			all, _, _ := e.st.Outbox("", store.ID{}, 100)
			t.Fatalf("condition not reached; outbox: %+v", all)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) entry(t *testing.T, id store.ID) *store.OutboxEntry {
	t.Helper()
	x, err := e.st.GetOutbox(id)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (e *env) status(t *testing.T, id store.ID) store.OutboxStatus { return e.entry(t, id).Status }

func smarthostYAML(addr string, enabled bool, extra string) string {
	return fmt.Sprintf(`
reporter:
  enabled: %v
  from: reports@reporter.test
  smarthost: {address: %q, tls: none}
  retry: {first: 50ms, give_up_after: 1h}
%s`, enabled, addr, extra)
}

const trapChannel = `
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.reporter.test"]
    redact: {recipients: true}
`

// zoneServer is a DNS server on 127.0.0.1 answering TXT from a map, for
// the abuse-contact zones the reporter asks.
func zoneServer(t *testing.T, txt map[string][]string, queries *atomic.Int32) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		vals, ok := txt[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		} else if q.Qtype == dns.TypeTXT {
			for _, v := range vals {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}})
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}
