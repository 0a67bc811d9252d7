package intel

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const rbldnsdPath = "/usr/sbin/rbldnsd"

// TestRbldnsdInterop exports the lists, has Debian's rbldnsd serve the
// files, and compares its answers with ours for the same queries.
func TestRbldnsdInterop(t *testing.T) {
	if _, err := os.Stat(rbldnsdPath); err != nil {
		t.Skipf("%s is absent (Debian package rbldnsd): the interop test needs it", rbldnsdPath)
	}
	r := newRig(t)
	s := r.service(t)
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "45.142.120.11")
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "2a01:4f8:c17:1b2c::1")
	mine(t, s)
	dir := t.TempDir()
	if err := s.Export(dir); err != nil {
		t.Fatal(err)
	}
	ours, _ := startDNS(t, s)
	theirs := startRbldnsd(t, dir, s)

	v6 := func(a string) string { return ReverseOf(netip.MustParseAddr(a)) + ".bl.abuse-desk.net." }
	queries := []struct {
		name     string
		qtype    uint16
		sameText bool
	}{
		{"11.120.142.45.bl.abuse-desk.net.", dns.TypeA, true},
		{"11.120.142.45.bl.abuse-desk.net.", dns.TypeTXT, true},
		{"12.120.142.45.bl.abuse-desk.net.", dns.TypeA, true},
		{"2.0.0.127.bl.abuse-desk.net.", dns.TypeA, true},
		{"2.0.0.127.bl.abuse-desk.net.", dns.TypeTXT, true},
		{"1.0.0.127.bl.abuse-desk.net.", dns.TypeA, true},
		{v6("2a01:4f8:c17:1b2c::1"), dns.TypeA, true},
		{v6("2a01:4f8:c17:1b2c::99"), dns.TypeA, true},
		{v6("2a01:4f8:c17:1b2d::1"), dns.TypeA, true},
		{v6("2a01:4f8:c17:1b2c::1"), dns.TypeTXT, false}, // ip6tset: one template
		{"spam-domain.biz.dbl.abuse-desk.net.", dns.TypeA, true},
		{"spam-domain.biz.dbl.abuse-desk.net.", dns.TypeTXT, true},
		{"click.spam-domain.biz.dbl.abuse-desk.net.", dns.TypeA, true},
		{"click.spam-domain.biz.dbl.abuse-desk.net.", dns.TypeTXT, true},
		{"other-domain.biz.dbl.abuse-desk.net.", dns.TypeA, true},
		{"test.dbl.abuse-desk.net.", dns.TypeA, true},
		{"invalid.dbl.abuse-desk.net.", dns.TypeA, true},
		{"honey.catchall-mail.com.dbl.abuse-desk.net.", dns.TypeA, true},
		{"bl.abuse-desk.net.", dns.TypeNS, true},
	}
	for _, q := range queries {
		a, b := exchange(t, ours, q.name, q.qtype), exchange(t, theirs, q.name, q.qtype)
		if a.Rcode != b.Rcode {
			t.Errorf("%s %s: rcode ours %s, rbldnsd %s", q.name, dns.TypeToString[q.qtype], dns.RcodeToString[a.Rcode], dns.RcodeToString[b.Rcode])
			continue
		}
		if ga, gb := rrText(a, q.sameText), rrText(b, q.sameText); !slices.Equal(ga, gb) {
			t.Errorf("%s %s: ours %q, rbldnsd %q", q.name, dns.TypeToString[q.qtype], ga, gb)
		}
	}
}

// rrText is the answer section without TTLs (rbldnsd and we may cache
// differently); text=false compares the record types only.
func rrText(m *dns.Msg, text bool) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, "A "+rr.A.String())
		case *dns.TXT:
			if text {
				out = append(out, "TXT "+strings.Join(rr.Txt, ""))
			} else {
				out = append(out, "TXT")
			}
		case *dns.NS:
			out = append(out, "NS "+rr.Ns)
		default:
			out = append(out, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	slices.Sort(out)
	return out
}

func exchange(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := (&dns.Client{}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s at %s: %v", name, dns.TypeToString[qtype], addr, err)
	}
	return r
}

func startRbldnsd(t testing.TB, dir string, s *Service) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	pc.Close()
	ip, dom := s.cfg.Intel.IPZone, s.cfg.Intel.DomainZone
	cmd := exec.Command(rbldnsdPath, "-n", "-q", "-b", fmt.Sprintf("127.0.0.1/%d", addr.Port), "-r", dir, "-t", "300",
		ip+":ip4set:"+FileIP4, ip+":ip6tset:"+FileIP6, dom+":dnset:"+FileDom)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until it answers: it loads the files after binding.
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("2.0.0.127."+ip+".", dns.TypeA)
	for i := 0; ; i++ {
		if r, _, err := c.Exchange(m, addr.String()); err == nil && len(r.Answer) > 0 {
			break
		}
		if i == 100 {
			t.Fatalf("rbldnsd does not answer on %s: %s (files: %v)", addr, stderr.String(), mustGlob(dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr.String()
}

func mustGlob(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*"))
	return m
}
