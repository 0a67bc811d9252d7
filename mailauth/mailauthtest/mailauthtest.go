// Package mailauthtest has the real parts that tests of message
// authentication need: an authoritative DNS server on 127.0.0.1 (UDP and
// TCP, miekg/dns) and a DKIM key with its TXT record and a signer. Only
// tests import it.
package mailauthtest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

// DNS is an in-process authoritative server for whatever names a test
// gives it. Unknown names are NXDOMAIN; names given with Hang get no
// answer at all, so the client times out.
type DNS struct {
	// Addr is host:port; the UDP and TCP servers share it.
	Addr string

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	hang    map[string]bool
	queries atomic.Int64
}

// StartDNS runs a server on 127.0.0.1 until the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	d := &DNS{records: map[string][]dns.RR{}, hang: map[string]bool{}}
	// One port for both: bind TCP first, then UDP on the same port (retry
	// when another process holds that UDP port).
	var (
		tl net.Listener
		pc net.PacketConn
	)
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p, err := net.ListenPacket("udp", l.Addr().String())
		if err != nil {
			l.Close()
			continue
		}
		tl, pc = l, p
		break
	}
	if tl == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	d.Addr = tl.Addr().String()
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: tl, Handler: d}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Go(func() { s.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
		wg.Wait()
	})
	return d
}

func (d *DNS) add(rr dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	d.records[name] = append(d.records[name], rr)
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: t, Class: dns.ClassINET, Ttl: 60}
}

// TXT publishes one TXT record; value is split into 255-byte strings as
// DNS requires (DKIM keys are longer).
func (d *DNS) TXT(name, value string) {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	parts = append(parts, value)
	d.add(&dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: parts})
}

// A publishes address records (A or AAAA by the address's family).
func (d *DNS) A(name string, addrs ...netip.Addr) {
	for _, a := range addrs {
		if a.Is4() {
			d.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: net.IP(a.AsSlice())})
		} else {
			d.add(&dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
		}
	}
}

// PTR publishes the reverse name of ip.
func (d *DNS) PTR(ip netip.Addr, name string) {
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		panic(err)
	}
	d.add(&dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: dns.Fqdn(name)})
}

// Hang makes queries for name go unanswered.
func (d *DNS) Hang(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hang[strings.ToLower(dns.Fqdn(name))] = true
}

// Queries is how many queries the server has received.
func (d *DNS) Queries() int64 { return d.queries.Load() }

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	d.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	hang := d.hang[name]
	rrs, known := d.records[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	d.mu.Unlock()
	if hang {
		return
	}
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size) // sets TC: the client asks again over TCP
	}
	w.WriteMsg(m)
}

// DKIMKey is a signing key and the record that publishes it.
type DKIMKey struct {
	Domain, Selector string
	Signer           crypto.Signer
}

// NewDKIMKey makes a 2048-bit RSA key for selector._domainkey.domain.
func NewDKIMKey(t testing.TB, domain, selector string) *DKIMKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &DKIMKey{Domain: domain, Selector: selector, Signer: k}
}

// Record is the TXT record of the key.
func (k *DKIMKey) Record(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
}

// Publish puts the key's record into d.
func (k *DKIMKey) Publish(t testing.TB, d *DNS) {
	d.TXT(k.Selector+"._domainkey."+k.Domain, k.Record(t))
}

// Sign returns raw with a DKIM-Signature of the key on top (relaxed
// header and body canonicalization, the common choice).
func (k *DKIMKey) Sign(t testing.TB, raw []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(raw), &dkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 k.Signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
