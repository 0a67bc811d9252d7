package contact

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store/storetest"
)

// originIP is the address the recorded RDAP answers are served for.
const originIP = "192.88.99.10"

func TestRDAPRecordedShapes(t *testing.T) {
	for file, want := range map[string][]string{
		"rdap-ripe.json":  {"abuse@ripe-member.example"},
		"rdap-arin.json":  {"abuse@arin-member.example"},
		"rdap-apnic.json": {"abuse@apnic-member.example", "security@apnic-member.example"},
	} {
		body, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			switch r.URL.Path {
			case "/rdap/ip/" + originIP:
				// Registries answer the bootstrap server with a redirect.
				http.Redirect(w, r, "/rir/ip/"+originIP, http.StatusFound)
			case "/rir/ip/" + originIP:
				w.Header().Set("Content-Type", "application/rdap+json")
				w.Write(body)
			default:
				http.NotFound(w, r)
			}
		}))
		got, err := NewRDAP(srv.URL+"/rdap", srv.Client()).AbuseEmails(context.Background(), netip.MustParseAddr(originIP))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v, %v; want %v", file, got, err, want)
		}
		if _, err := NewRDAP(srv.URL+"/rdap/", srv.Client()).AbuseEmails(context.Background(), netip.MustParseAddr("192.88.99.1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: 404 gave %v, want ErrNotFound", file, err)
		}
		srv.Close()
	}
}

func TestRDAPErrorsAreTransient(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ip/192.88.99.2") {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	c := NewRDAP(slow.URL, &http.Client{Timeout: 200 * time.Millisecond})
	for _, ip := range []string{"192.88.99.1", "192.88.99.2"} {
		if _, err := c.AbuseEmails(context.Background(), netip.MustParseAddr(ip)); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want a transient error", ip, err)
		}
	}
	if _, err := parseRDAP([]byte(`{"entities":[{"roles":["abuse"],"vcardArray":["vcard",[["email",{},"text","bad address <x@y.z>"]]]}]}`)); err != nil {
		t.Fatal(err)
	}
	got, _ := parseRDAP([]byte(`{"entities":[{"roles":["abuse"],"vcardArray":["vcard",[["email",{},"text","a@b.example\r\nBcc: x@y.z"]]]}]}`))
	if len(got) == 0 || got[0] != "a@b.example" {
		t.Fatalf("RDAP email with a line break: %q", got)
	}
	for _, a := range got {
		if strings.ContainsAny(a, "\r\n :") {
			t.Fatalf("header injection through RDAP: %q", a)
		}
	}
}

// zoneServer is a DNS server on 127.0.0.1 answering TXT from a map.
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

func TestContactsOrderAndCache(t *testing.T) {
	var queries atomic.Int32
	server := zoneServer(t, map[string][]string{
		"10.99.88.192.abuse.test.": {"abuse@dns-desk.example", "second@dns-desk.example,abuse@dns-desk.example"},
		"b.a.9.8.7.6.5.4.3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.8.8.2.abuse.test.": {"v6@dns-desk.example"},
	}, &queries)
	var rdapHits atomic.Int32
	ripe, _ := os.ReadFile(filepath.Join("testdata", "rdap-ripe.json"))
	rd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rdapHits.Add(1)
		if r.URL.Path == "/ip/192.88.99.20" {
			w.Write(ripe)
			return
		}
		http.NotFound(w, r)
	}))
	defer rd.Close()
	st := storetest.Open(t, t.TempDir())
	cfg := &config.Contacts{
		Static: []config.StaticContact{
			{Network: config.Prefix{Prefix: netip.MustParsePrefix("192.88.99.128/25")}, Email: "wide@static.example"},
			{Network: config.Prefix{Prefix: netip.MustParsePrefix("192.88.99.192/26")}, Email: "narrow@static.example"},
		},
		DNSZones: []string{"abuse.test"},
		CacheTTL: config.Duration(time.Hour),
	}
	c := New(cfg, server, st, NewRDAP(rd.URL, rd.Client()), nil)
	ctx := context.Background()
	check := func(ip string, want []string, source string) {
		t.Helper()
		got, err := c.Lookup(ctx, netip.MustParseAddr(ip))
		if err != nil || !slices.Equal(got.Emails, want) || got.Source != source {
			t.Fatalf("%s: %+v %v; want %v from %s", ip, got, err, want, source)
		}
	}
	check("192.88.99.200", []string{"narrow@static.example"}, SourceStatic) // longest prefix
	check("192.88.99.150", []string{"wide@static.example"}, SourceStatic)
	check("192.88.99.10", []string{"abuse@dns-desk.example", "second@dns-desk.example"}, "dns:abuse.test")
	check("2888::123:4567:89ab", []string{"v6@dns-desk.example"}, "dns:abuse.test")
	cfg.Static = nil
	check("192.88.99.20", []string{"abuse@ripe-member.example"}, SourceRDAP)
	if _, err := c.Lookup(ctx, netip.MustParseAddr("192.88.99.30")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	// Everything is cached now, the negative answer too.
	q, h := queries.Load(), rdapHits.Load()
	check("192.88.99.10", []string{"abuse@dns-desk.example", "second@dns-desk.example"}, "dns:abuse.test")
	check("192.88.99.20", []string{"abuse@ripe-member.example"}, SourceRDAP)
	if _, err := c.Lookup(ctx, netip.MustParseAddr("192.88.99.30")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown (cached): %v", err)
	}
	if queries.Load() != q || rdapHits.Load() != h {
		t.Fatalf("cache missed: %d DNS, %d RDAP queries more", queries.Load()-q, rdapHits.Load()-h)
	}
	// After the TTL the lookup is made again.
	c.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	check("192.88.99.10", []string{"abuse@dns-desk.example", "second@dns-desk.example"}, "dns:abuse.test")
	if queries.Load() == q {
		t.Fatal("expired cache entry was used")
	}
}

func TestReverseName(t *testing.T) {
	if got := reverseName(netip.MustParseAddr("192.0.2.1"), "z.example."); got != "1.2.0.192.z.example" {
		t.Fatal(got)
	}
	if got := reverseName(netip.MustParseAddr("2001:db8::1"), "z"); got != "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.z" {
		t.Fatal(got)
	}
}
