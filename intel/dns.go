package intel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/xarfd/xarfd/config"
)

// Answer codes (RFC 5782 section 2.3: 127.0.0.2 is "listed").
const (
	// CodeListed is the A answer of every listed entry.
	CodeListed = "127.0.0.2"
	// answerTTL is short: a delisting reaches resolvers within minutes.
	answerTTL = 300
	// negativeTTL is the SOA minimum: how long NXDOMAIN is cached.
	negativeTTL = 60
)

// Lookups is what the DNS server needs from the service.
type Lookups interface {
	LookupIP(netip.Addr) (Listing, bool)
	Lookup(Kind, string) (Listing, bool)
}

// DNS answers blocklist queries from memory per RFC 5782.
type DNS struct {
	ipZone, domZone string // fqdn, lower case
	lookupURL       string
	look            Lookups
	metrics         *Metrics
	ns, mbox        string
	serial          uint32
}

// NewDNS builds the handler for cfg's zones. lookupURL is the base of the
// link in TXT answers.
func NewDNS(cfg *config.Config, look Lookups, lookupURL string, m *Metrics) *DNS {
	d := &DNS{ipZone: dns.Fqdn(zoneName(cfg.Intel.IPZone)), domZone: dns.Fqdn(zoneName(cfg.Intel.DomainZone)),
		lookupURL: strings.TrimSuffix(lookupURL, "/"), look: look, metrics: m,
		ns: dns.Fqdn(cfg.Hostname), serial: uint32(time.Now().Unix())}
	d.mbox = dns.Fqdn("hostmaster." + strings.TrimSuffix(d.ipZone, "."))
	return d
}

func zoneName(z string) string { return strings.TrimSuffix(strings.ToLower(z), ".") }

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	resp := d.Answer(r)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

// Answer computes the reply to one query; it never fails nor panics.
func (d *DNS) Answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	zone := "other"
	defer func() { d.metrics.query(zone, dns.RcodeToString[m.Rcode]) }()
	if len(r.Question) != 1 || r.Response {
		m.SetRcodeFormatError(r)
		return m
	}
	if r.Opcode != dns.OpcodeQuery {
		m.SetRcode(r, dns.RcodeNotImplemented)
		return m
	}
	m.SetReply(r)
	m.RecursionAvailable = false
	if o := r.IsEdns0(); o != nil {
		// RFC 6891: answer EDNS with EDNS; only version 0 exists.
		m.SetEdns0(4096, false)
		if o.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	name := strings.ToLower(q.Name)
	if _, ok := dns.IsDomainName(name); !ok {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	var apex string
	var listing Listing
	var listed bool
	switch {
	case dns.IsSubDomain(d.ipZone, name):
		zone, apex = "ip", d.ipZone
		if name != apex {
			listing, listed = d.lookupIP(strings.TrimSuffix(name, "."+apex))
		}
	case dns.IsSubDomain(d.domZone, name):
		zone, apex = "domain", d.domZone
		if name != apex {
			listing, listed = d.lookupDomain(strings.TrimSuffix(name, "."+apex))
		}
	default:
		m.Rcode = dns.RcodeRefused
		return m
	}
	m.Authoritative = true
	if name == apex {
		switch q.Qtype {
		case dns.TypeSOA, dns.TypeANY:
			m.Answer = append(m.Answer, d.soa(apex))
			if q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, d.nsRR(apex))
			}
		case dns.TypeNS:
			m.Answer = append(m.Answer, d.nsRR(apex))
		default:
			m.Ns = append(m.Ns, d.soa(apex))
		}
		return m
	}
	if !listed {
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, d.soa(apex))
		return m
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: answerTTL}
	}
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: net.ParseIP(CodeListed).To4()})
	}
	if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{listing.Reason}})
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, d.soa(apex))
	}
	return m
}

func (d *DNS) soa(apex string) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: answerTTL},
		Ns: d.ns, Mbox: d.mbox, Serial: d.serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: negativeTTL}
}

func (d *DNS) nsRR(apex string) dns.RR {
	return &dns.NS{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: answerTTL}, Ns: d.ns}
}

// Test entries of RFC 5782 section 5: listed, and never listed.
var (
	testListed4    = netip.MustParseAddr("127.0.0.2")
	testListed6    = netip.MustParseAddr("::ffff:7f00:2")
	testNotListed4 = netip.MustParseAddr("127.0.0.1")
	testNotListed6 = netip.MustParseAddr("::ffff:7f00:1")
)

const testReason = "xarfd test entry (RFC 5782)"

func (d *DNS) lookupIP(rev string) (Listing, bool) {
	a, ok := ReverseName(rev)
	if !ok {
		return Listing{}, false
	}
	switch a {
	case testListed4, testListed6:
		return Listing{Reason: testReason}, true
	case testNotListed4, testNotListed6:
		return Listing{}, false
	}
	l, ok := d.look.LookupIP(a)
	if ok {
		l.Reason = d.txt(l.Reason, KindIP, a.String())
	}
	return l, ok
}

func (d *DNS) lookupDomain(name string) (Listing, bool) {
	switch name {
	case "test":
		return Listing{Reason: testReason}, true
	case "invalid":
		return Listing{}, false
	}
	// A right-hand-side list is asked about whole host names (Postfix's
	// reject_rhsbl_sender asks for the sender's domain as written): a
	// listed registrable domain lists its subdomains.
	for n := name; strings.Contains(n, "."); n = n[strings.IndexByte(n, '.')+1:] {
		if l, ok := d.look.Lookup(KindDomain, n); ok {
			l.Reason = d.txt(l.Reason, KindDomain, n)
			return l, true
		}
	}
	return Listing{}, false
}

// TXTFor is the TXT text of a listed indicator: its reason and where to
// look it up. The export writes the same text, so rbldnsd answers alike.
func (d *DNS) txt(reason string, k Kind, v string) string {
	return TXTText(reason, d.lookupURL, k, v)
}

// TXTText joins a reason and the lookup link, within one TXT string.
func TXTText(reason, base string, k Kind, v string) string {
	s := reason + "; see " + base + "/api/v1/indicators/" + string(k) + "/" + v
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

// ReverseName parses the query part of an IP zone name: four reversed
// IPv4 octets, or 32 reversed IPv6 nibbles.
func ReverseName(s string) (netip.Addr, bool) {
	labels := strings.Split(s, ".")
	switch len(labels) {
	case 4:
		var b [4]byte
		for i, l := range labels {
			if len(l) == 0 || len(l) > 3 || (len(l) > 1 && l[0] == '0') {
				return netip.Addr{}, false
			}
			n, err := strconv.Atoi(l)
			if err != nil || n > 255 {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	case 32:
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			n, err := strconv.ParseUint(l, 16, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= byte(n) << 4
			} else {
				b[pos/2] |= byte(n)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// ReverseOf is the query label of an address (the inverse of ReverseName).
func ReverseOf(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := a.As16()
	var sb strings.Builder
	for i := 15; i >= 0; i-- {
		fmt.Fprintf(&sb, "%x.%x.", b[i]&0xf, b[i]>>4)
	}
	return strings.TrimSuffix(sb.String(), ".")
}

// Serve runs the DNS server on every address of listen, UDP and TCP,
// until ctx ends. The listeners are opened before it returns, so that
// a port in use is an error at start.
func (d *DNS) Serve(ctx context.Context, listen []string) (bound []string, wait func(), err error) {
	var servers []*dns.Server
	closeAll := func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}
	for _, addr := range listen {
		pc, l, err := listenBoth(addr)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		bound = append(bound, pc.LocalAddr().String())
		servers = append(servers,
			&dns.Server{PacketConn: pc, Handler: d, UDPSize: 4096},
			&dns.Server{Listener: &capListener{Listener: l, slots: make(chan struct{}, maxDNSTCPConns)}, Handler: d, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
				IdleTimeout: func() time.Duration { return 8 * time.Second }, MaxTCPQueries: 1000})
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, len(servers))
	failed := make(chan error, len(servers))
	for _, s := range servers {
		s.NotifyStartedFunc = func() { started <- struct{}{} }
		wg.Go(func() {
			if err := s.ActivateAndServe(); err != nil {
				failed <- err
			}
		})
	}
	for range servers {
		select {
		case <-started:
		case err := <-failed:
			closeAll()
			wg.Wait()
			return nil, nil, fmt.Errorf("starting the blocklist DNS server: %w", err)
		}
	}
	go func() {
		<-ctx.Done()
		closeAll()
	}()
	return bound, wg.Wait, nil
}

// listenBoth opens UDP and TCP on one address. With port 0, TCP takes the
// port UDP got, and another port is tried when TCP's is taken.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("intel.dns.listen %s (udp): %w", addr, err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || try == 20 {
			return nil, nil, fmt.Errorf("intel.dns.listen %s (tcp): %w", addr, err)
		}
	}
}

// maxDNSTCPConns bounds the TCP connections the blocklist server holds at
// once: miekg/dns starts a goroutine per connection and keeps it up to
// its idle timeout, so without a cap a client could hold file
// descriptors the SMTP listener needs. Resolvers use TCP only after a
// truncated UDP answer, which our answers never are; 256 is plenty.
const maxDNSTCPConns = 256

// capListener closes a connection at once when maxDNSTCPConns are open.
type capListener struct {
	net.Listener
	slots chan struct{}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &slotConn{Conn: c, free: func() { <-l.slots }}, nil
		default:
			c.Close()
		}
	}
}

// slotConn gives its slot back once, when closed.
type slotConn struct {
	net.Conn
	once sync.Once
	free func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.free)
	return err
}
