package intel

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func startDNS(t *testing.T, s *Service) (string, *DNS) { return startDNSTB(t, s) }

func startDNSTB(t testing.TB, s *Service) (string, *DNS) {
	t.Helper()
	d := NewDNS(s.cfg, s, "http://127.0.0.1:8025", nil)
	ctx, cancel := context.WithCancel(context.Background())
	bound, wait, err := d.Serve(ctx, []string{"127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wait() })
	return bound[0], d
}

func query(t *testing.T, addr, proto, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: proto}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", proto, name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestDNSAnswers(t *testing.T) {
	r := newRig(t)
	s := r.service(t)
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "45.142.120.11")
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "2a01:4f8:c17:1b2c::1")
	mine(t, s)
	addr, _ := startDNS(t, s)
	v6 := ReverseOf(netip.MustParseAddr("2a01:4f8:c17:1b2c::77")) // same /64
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		a     string // A answer wanted, or ""
		txt   string // substring of the TXT answer
	}{
		{"11.120.142.45.bl.abuse-desk.net.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2", ""},
		{"11.120.142.45.BL.abuse-desk.net.", dns.TypeTXT, dns.RcodeSuccess, "", "1 spamtrap hits"},
		{"11.120.142.45.bl.abuse-desk.net.", dns.TypeTXT, dns.RcodeSuccess, "", "http://127.0.0.1:8025/api/v1/indicators/ip/45.142.120.11"},
		{"12.120.142.45.bl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{v6 + ".bl.abuse-desk.net.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2", ""},
		{"2.0.0.127.bl.abuse-desk.net.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2", ""},
		{"2.0.0.127.bl.abuse-desk.net.", dns.TypeTXT, dns.RcodeSuccess, "", "test entry"},
		{"1.0.0.127.bl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{ReverseOf(testListed6) + ".bl.abuse-desk.net.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2", ""},
		{ReverseOf(testNotListed6) + ".bl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{"spam-domain.biz.dbl.abuse-desk.net.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2", ""},
		{"mail.spam-domain.biz.dbl.abuse-desk.net.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2", ""},
		{"spam-domain.biz.dbl.abuse-desk.net.", dns.TypeTXT, dns.RcodeSuccess, "", "/api/v1/indicators/domain/spam-domain.biz"},
		{"test.dbl.abuse-desk.net.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2", ""},
		{"invalid.dbl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{"catchall-mail.com.dbl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{"honey.catchall-mail.com.dbl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{"not-an-ip.bl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{"300.0.0.1.bl.abuse-desk.net.", dns.TypeA, dns.RcodeNameError, "", ""},
		{"example.org.", dns.TypeA, dns.RcodeRefused, "", ""},
		{"abuse-desk.net.", dns.TypeA, dns.RcodeRefused, "", ""},
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, c := range cases {
			m := query(t, addr, proto, c.name, c.qtype)
			if m.Rcode != c.rcode {
				t.Errorf("%s %s %s: rcode %s, want %s", proto, c.name, dns.TypeToString[c.qtype], dns.RcodeToString[m.Rcode], dns.RcodeToString[c.rcode])
				continue
			}
			var a, txt string
			for _, rr := range m.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					a = rr.A.String()
				case *dns.TXT:
					txt = strings.Join(rr.Txt, "")
				}
			}
			if a != c.a || !strings.Contains(txt, c.txt) || (c.txt != "" && txt == "") {
				t.Errorf("%s %s: A %q TXT %q, want A %q TXT containing %q", proto, c.name, a, txt, c.a, c.txt)
			}
			if c.rcode == dns.RcodeNameError && (len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA || !m.Authoritative) {
				t.Errorf("%s: NXDOMAIN without the zone's SOA: %v", c.name, m)
			}
		}
	}
	for _, apex := range []string{"bl.abuse-desk.net.", "dbl.abuse-desk.net."} {
		if m := query(t, addr, "udp", apex, dns.TypeSOA); len(m.Answer) != 1 || m.Answer[0].Header().Rrtype != dns.TypeSOA {
			t.Errorf("%s SOA: %v", apex, m)
		}
		if m := query(t, addr, "udp", apex, dns.TypeNS); len(m.Answer) != 1 || m.Answer[0].(*dns.NS).Ns != "mx1.abuse-desk.net." {
			t.Errorf("%s NS: %v", apex, m)
		}
	}
}

func TestDNSMalformed(t *testing.T) {
	r := newRig(t)
	s := r.service(t)
	addr, _ := startDNS(t, s)
	// Two questions in one query: FORMERR from the server.
	m := new(dns.Msg)
	m.SetQuestion("2.0.0.127.bl.abuse-desk.net.", dns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	c := &dns.Client{Net: "udp"}
	resp, _, err := c.Exchange(m, addr)
	if err != nil || resp.Rcode != dns.RcodeFormatError {
		t.Fatalf("two questions: %v %v", err, resp)
	}
	// Garbage after a valid header: the server answers FORMERR or
	// nothing, and keeps serving.
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff})
	conn.Close()
	if m := query(t, addr, "udp", "2.0.0.127.bl.abuse-desk.net.", dns.TypeA); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("server broken after a malformed packet: %v", m)
	}
	d := NewDNS(s.cfg, s, "http://x", nil)
	q := new(dns.Msg)
	q.SetQuestion("2.0.0.127.bl.abuse-desk.net.", dns.TypeA)
	q.Opcode = dns.OpcodeUpdate
	if a := d.Answer(q); a.Rcode != dns.RcodeNotImplemented {
		t.Errorf("UPDATE: %s", dns.RcodeToString[a.Rcode])
	}
	q = new(dns.Msg)
	q.SetQuestion("2.0.0.127.bl.abuse-desk.net.", dns.TypeA)
	q.SetEdns0(1232, false)
	if a := d.Answer(q); a.IsEdns0() == nil || len(a.Answer) != 1 {
		t.Errorf("EDNS query: no OPT in the answer: %v", a)
	}
	q.IsEdns0().SetVersion(1)
	if a := d.Answer(q); a.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: %s", dns.RcodeToString[a.Rcode])
	}
	q = new(dns.Msg)
	if a := d.Answer(q); a.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: %s", dns.RcodeToString[a.Rcode])
	}
}

func FuzzDNSAnswer(f *testing.F) {
	for _, n := range []string{"2.0.0.127.bl.abuse-desk.net.", "test.dbl.abuse-desk.net.", "x.example.", "bl.abuse-desk.net."} {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		b, _ := m.Pack()
		f.Add(b)
	}
	cfgRig := newFuzzService(f)
	d := NewDNS(cfgRig.cfg, cfgRig, "http://x", nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		resp := d.Answer(m)
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, resp)
		}
	})
}

func newFuzzService(f *testing.F) *Service {
	r := newRig(f)
	return r.service(f)
}

// TestCapListener: beyond its slots a connection is closed at once; a
// closed connection gives its slot back.
func TestCapListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &capListener{Listener: inner, slots: make(chan struct{}, 2)}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dialed := make([]net.Conn, 3)
	for i := range dialed {
		if dialed[i], err = net.Dial("tcp", inner.Addr().String()); err != nil {
			t.Fatal(err)
		}
		defer dialed[i].Close()
	}
	first, second := <-accepted, <-accepted
	// The third was refused: the server closed it, so a read ends.
	dialed[2].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := dialed[2].Read(make([]byte, 1)); err == nil {
		t.Fatal("a third connection was served with two slots")
	}
	select {
	case c := <-accepted:
		t.Fatalf("a third connection was accepted: %v", c.RemoteAddr())
	default:
	}
	first.Close()
	first.Close() // twice frees one slot only
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case x := <-accepted:
		x.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a freed slot was not given to the next connection")
	}
	second.Close()
}
