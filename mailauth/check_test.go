package mailauth_test

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/xarfd/xarfd/mailauth"
	"github.com/xarfd/xarfd/mailauth/mailauthtest"
)

const msg = "From: Reports <fbl@reporter.example>\r\nTo: fbl@us.example\r\nSubject: complaint\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <1@reporter.example>\r\n\r\nThis is a complaint.\r\n"

var (
	// 127.0.0.2: not in /etc/hosts, so iprev asks the test's DNS server.
	loopback = netip.MustParseAddr("127.0.0.2")
	public   = netip.MustParseAddr("203.0.113.7")
)

type world struct {
	dns     *mailauthtest.DNS
	key     *mailauthtest.DKIMKey // reporter.example, published
	other   *mailauthtest.DKIMKey // elsewhere.example, published
	checker *mailauth.Checker
}

func newWorld(t *testing.T) *world {
	d := mailauthtest.StartDNS(t)
	w := &world{
		dns:   d,
		key:   mailauthtest.NewDKIMKey(t, "reporter.example", "s1"),
		other: mailauthtest.NewDKIMKey(t, "elsewhere.example", "sel"),
		checker: &mailauth.Checker{
			Resolver:        mailauth.NewResolver(d.Addr),
			Timeout:         2 * time.Second,
			CheckLocalPeers: true,
		},
	}
	w.key.Publish(t, d)
	w.other.Publish(t, d)
	d.TXT("reporter.example", "v=spf1 ip4:127.0.0.0/8 -all")
	d.TXT("softfail.example", "v=spf1 ip4:192.0.2.1 ~all")
	d.TXT("helo.reporter.example", "v=spf1 a -all")
	d.A("helo.reporter.example", loopback)
	d.PTR(loopback, "mx.reporter.example")
	d.A("mx.reporter.example", loopback)
	d.PTR(public, "liar.example")
	d.A("liar.example", netip.MustParseAddr("198.51.100.1"))
	return w
}

func (w *world) check(t *testing.T, raw []byte, ip netip.Addr, from string) *mailauth.Results {
	t.Helper()
	return w.checker.Check(context.Background(), mailauth.Input{Raw: raw, PeerIP: ip, HELO: "helo.reporter.example", MailFrom: from})
}

func TestDKIM(t *testing.T) {
	w := newWorld(t)
	signed := w.key.Sign(t, []byte(msg))
	tampered := bytes.Replace(signed, []byte("a complaint"), []byte("a forgery!!"), 1)
	if bytes.Equal(tampered, signed) {
		t.Fatal("tampering changed nothing")
	}
	unpublished := mailauthtest.NewDKIMKey(t, "reporter.example", "gone")
	hangs := mailauthtest.NewDKIMKey(t, "reporter.example", "slow")
	w.dns.Hang("slow._domainkey.reporter.example")

	allowed := []string{"reporter.example"}
	for _, c := range []struct {
		name    string
		raw     []byte
		want    []mailauth.DKIMResult
		verdict mailauth.Verdict
	}{
		{name: "signed", raw: signed, want: []mailauth.DKIMResult{{Result: "pass", Domain: "reporter.example", Identifier: "@reporter.example"}}, verdict: mailauth.Accepted},
		{name: "unsigned", raw: []byte(msg), verdict: mailauth.Refused},
		{name: "wrong domain", raw: w.other.Sign(t, []byte(msg)), want: []mailauth.DKIMResult{{Result: "pass", Domain: "elsewhere.example", Identifier: "@elsewhere.example"}}, verdict: mailauth.Refused},
		{name: "body tampered", raw: tampered, want: []mailauth.DKIMResult{{Result: "fail", Reason: "body hash did not verify", Domain: "reporter.example", Identifier: "@reporter.example"}}, verdict: mailauth.Refused},
		{name: "header tampered", raw: bytes.Replace(signed, []byte("Subject: complaint"), []byte("Subject: Complaint"), 1), want: []mailauth.DKIMResult{{Result: "fail", Reason: "signature did not verify", Domain: "reporter.example", Identifier: "@reporter.example"}}, verdict: mailauth.Refused},
		{name: "key not published", raw: unpublished.Sign(t, []byte(msg)), want: []mailauth.DKIMResult{{Result: "permerror", Reason: "no key for signature", Domain: "reporter.example", Identifier: "@reporter.example"}}, verdict: mailauth.Refused},
		{name: "key lookup times out", raw: hangs.Sign(t, []byte(msg)), want: []mailauth.DKIMResult{{Result: "temperror", Reason: "key unavailable", Domain: "reporter.example", Identifier: "@reporter.example"}}, verdict: mailauth.Deferred},
		{name: "good and wrong signature", raw: w.other.Sign(t, signed), want: []mailauth.DKIMResult{
			{Result: "pass", Domain: "elsewhere.example", Identifier: "@elsewhere.example"},
			{Result: "pass", Domain: "reporter.example", Identifier: "@reporter.example"}}, verdict: mailauth.Accepted},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The key server never answers "slow": its temperror can only
			// come from the checker's timeout giving up on the lookup.
			r := w.check(t, c.raw, loopback, "fbl@reporter.example")
			if len(r.DKIM) != len(c.want) {
				t.Fatalf("DKIM = %+v, want %+v", r.DKIM, c.want)
			}
			for i := range c.want {
				if r.DKIM[i] != c.want[i] {
					t.Errorf("DKIM[%d] = %+v, want %+v", i, r.DKIM[i], c.want[i])
				}
			}
			if v := r.DKIMVerdict(allowed); v != c.verdict {
				t.Errorf("verdict %v, want %v", v, c.verdict)
			}
			if v := r.DKIMVerdict(nil); v != mailauth.Accepted {
				t.Errorf("no requirement: verdict %v", v)
			}
		})
	}
}

// A message from a relay on our own network gets no SPF or iprev check,
// and DKIM is verified in the caller's goroutine; the timeout still holds.
func TestDKIMFromLocalRelay(t *testing.T) {
	w := newWorld(t)
	w.checker.CheckLocalPeers = false
	w.checker.Timeout = 500 * time.Millisecond
	hangs := mailauthtest.NewDKIMKey(t, "reporter.example", "slow")
	w.dns.Hang("slow._domainkey.reporter.example")
	for _, c := range []struct {
		name, raw, dkim, dkimError string
	}{
		{name: "signed", raw: string(w.key.Sign(t, []byte(msg))), dkim: "pass"},
		{name: "unsigned", raw: msg},
		{name: "header never ends", raw: "From: a@reporter.example\r\nSubject: x\r\n", dkimError: "message header could not be read"},
		{name: "key lookup hangs", raw: string(hangs.Sign(t, []byte(msg))), dkim: "temperror"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := w.check(t, []byte(c.raw), loopback, "fbl@reporter.example")
			if r.SPF != mailauth.None || r.IPRev != mailauth.None {
				t.Errorf("SPF %q, iprev %q: want none for a local peer", r.SPF, r.IPRev)
			}
			got := ""
			if len(r.DKIM) == 1 {
				got = r.DKIM[0].Result
			} else if len(r.DKIM) > 1 {
				t.Fatalf("DKIM = %+v", r.DKIM)
			}
			if got != c.dkim || r.DKIMError != c.dkimError {
				t.Errorf("DKIM %q, error %q; want %q, %q", got, r.DKIMError, c.dkim, c.dkimError)
			}
		})
	}
}

func TestMaxSignatures(t *testing.T) {
	w := newWorld(t)
	raw := []byte(msg)
	for range 4 {
		raw = w.other.Sign(t, raw)
	}
	raw = w.key.Sign(t, raw) // on top: verified first
	w.checker.MaxSignatures = 2
	before := w.dns.Queries()
	r := w.check(t, raw, netip.MustParseAddr("10.1.2.3"), "")
	w.checker.CheckLocalPeers = false
	if len(r.DKIM) != 2 || !r.TooManySignatures || r.DKIMVerdict([]string{"reporter.example"}) != mailauth.Accepted {
		t.Errorf("results %+v", r)
	}
	if n := w.dns.Queries() - before; n > 8 {
		t.Errorf("%d DNS queries for two signatures and SPF/iprev", n)
	}
}

func TestSPFAndIPRev(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		name             string
		ip               netip.Addr
		from             string
		spf, iprev       string
		local            bool
		wantSPFParamHELO bool
	}{
		{name: "pass", ip: loopback, from: "fbl@reporter.example", spf: "pass", iprev: "pass", local: true},
		{name: "fail", ip: public, from: "fbl@reporter.example", spf: "fail", iprev: "fail", local: true},
		{name: "softfail", ip: loopback, from: "x@softfail.example", spf: "softfail", iprev: "pass", local: true},
		{name: "no record", ip: loopback, from: "x@nothing.example", spf: "none", iprev: "pass", local: true},
		{name: "null sender uses HELO", ip: loopback, from: "", spf: "pass", iprev: "pass", local: true, wantSPFParamHELO: true},
		{name: "local peer not looked up", ip: loopback, from: "fbl@reporter.example", spf: "none", iprev: "none"},
		{name: "private peer not looked up", ip: netip.MustParseAddr("10.0.0.1"), from: "fbl@reporter.example", spf: "none", iprev: "none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w.checker.CheckLocalPeers = c.local
			before := w.dns.Queries()
			r := w.check(t, []byte(msg), c.ip, c.from)
			if r.SPF != c.spf || r.IPRev != c.iprev {
				t.Errorf("spf=%s (%s) iprev=%s (%s), want %s and %s", r.SPF, r.SPFReason, r.IPRev, r.IPRevReason, c.spf, c.iprev)
			}
			if !c.local && w.dns.Queries() != before {
				t.Errorf("%d DNS queries about a non-public peer", w.dns.Queries()-before)
			}
			h := r.Header("mx.us.example", "\r\n")
			_, results, err := authres.Parse(strings.TrimSuffix(strings.TrimPrefix(h, "Authentication-Results: "), "\r\n"))
			if err != nil {
				t.Fatalf("header %q does not parse: %v", h, err)
			}
			var spf *authres.SPFResult
			var iprev *authres.IPRevResult
			for _, res := range results {
				switch res := res.(type) {
				case *authres.SPFResult:
					spf = res
				case *authres.IPRevResult:
					iprev = res
				}
			}
			if spf == nil || string(spf.Value) != c.spf || iprev == nil || iprev.IP != c.ip.String() {
				t.Fatalf("header %q: spf %+v iprev %+v", h, spf, iprev)
			}
			if c.wantSPFParamHELO != (spf.Helo == "helo.reporter.example" && spf.From == "") {
				t.Errorf("spf params %+v", spf)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	r := &mailauth.Results{
		AuthUser: "partner1",
		DKIM: []mailauth.DKIMResult{
			{Result: "pass", Domain: "reporter.example", Identifier: "@reporter.example"},
			{Result: "fail", Reason: "body hash did not verify", Domain: "x.example"},
		},
		PeerIP:   netip.MustParseAddr("2001:db8::1"),
		SPF:      "pass",
		MailFrom: "bounce@reporter.example",
		HELO:     "evil\r\nX-Injected: yes",
		IPRev:    "pass",
	}
	want := "Authentication-Results: mx.us.example;\r\n" +
		"\tauth=pass smtp.auth=partner1;\r\n" +
		"\tdkim=pass header.d=reporter.example header.i=@reporter.example;\r\n" +
		"\tdkim=fail reason=\"body hash did not verify\" header.d=x.example;\r\n" +
		"\tspf=pass smtp.mailfrom=bounce@reporter.example;\r\n" +
		"\tiprev=pass policy.iprev=\"2001:db8::1\"\r\n"
	if got := r.Header("mx.us.example", "\r\n"); got != want {
		t.Errorf("header\n%s\nwant\n%s", got, want)
	}
	// Values from the client never break the field's line.
	r.MailFrom = ""
	h := r.Header("mx.us.example", "\n")
	if strings.Contains(h, "\r") || strings.Count(h, "\n") != 6 || !strings.Contains(h, "smtp.helo=") {
		t.Errorf("header with a hostile HELO: %q", h)
	}
	// No signature at all is dkim=none.
	if h := (&mailauth.Results{SPF: "none"}).Header("h", "\n"); !strings.Contains(h, "dkim=none") {
		t.Errorf("unsigned: %q", h)
	}
}

func TestDomainMatches(t *testing.T) {
	allowed := []string{"Yahoo.com", "mail.example."}
	for d, want := range map[string]bool{
		"yahoo.com":          true,
		"YAHOO.COM.":         true,
		"fbl.yahoo.com":      true,
		"notyahoo.com":       false,
		"yahoo.com.evil":     false,
		"mail.example":       true,
		"a.b.mail.example":   true,
		"example":            false,
		"":                   false,
		"yahoo.com\x00x.org": false,
	} {
		if got := mailauth.DomainMatches(d, allowed); got != want {
			t.Errorf("DomainMatches(%q) = %v", d, got)
		}
	}
}

func TestLineEnding(t *testing.T) {
	for raw, want := range map[string]string{
		"Subject: a\r\n\r\nb": "\r\n",
		"Subject: a\n\nb":     "\n",
		"\nbody":              "\n",
		"":                    "\r\n",
		"no line end":         "\r\n",
	} {
		if got := mailauth.LineEnding([]byte(raw)); got != want {
			t.Errorf("LineEnding(%q) = %q", raw, got)
		}
	}
}
