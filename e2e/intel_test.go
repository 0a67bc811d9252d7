package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// intelConfig has a trap domain under a real TLD, so that "the trap is
// never findable" is not satisfied by the reserved-name rule alone.
func intelConfig() string {
	return fmt.Sprintf(`
hostname: mx.e2e.example
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: trap
    kind: trap
    addresses: ["*@honey.catchall-mail.com"]
    redact: {recipients: true}
    uses: [report, store, intel]
intel:
  dns: {listen: ["127.0.0.1:0"]}
  ip_zone: bl.e2e.example
  domain_zone: dbl.e2e.example
http:
  listen: "127.0.0.1:0"
  tokens:
    - {name: reader, sha256: %q, scopes: [read]}
    - {name: feeder, sha256: %q, scopes: [submit]}
`, hashHex(e2eRead), hashHex(e2eSubmit))
}

const intelTrapHit = "Received: from bad.host (bad.host [45.142.120.11]) by relay.other.example; Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
	"From: Deals <offers@spam-domain.biz>\r\nTo: victim@honey.catchall-mail.com\r\nSubject: win\r\n" +
	"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <w1@spam-domain.biz>\r\nContent-Type: text/html\r\n\r\n" +
	"<a href=\"https://click.spam-domain.biz/x?u=victim@honey.catchall-mail.com\">win</a> victim@honey.catchall-mail.com " +
	"<a href=\"https://honey.catchall-mail.com/track\">t</a>\r\n"

// dnsAddr waits for the daemon's "dns listening" line.
func dnsAddr(t *testing.T, d *daemon) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(d.logs.String(), "\n") {
			var ev struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "dns listening" && ev.Addr != "" {
				return ev.Addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no \"dns listening\" line in the log:\n%s", d.logs.String())
	return ""
}

// dig runs Debian's dig against the daemon and returns the status and
// the answer lines.
func dig(t *testing.T, addr, name, qtype string) (status string, answers []string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("dig", "@"+host, "-p", port, "+norecurse", "+time=5", "+tries=1", name, qtype).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s %s: %v\n%s", name, qtype, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "status: "); i >= 0 {
			status = strings.TrimSuffix(strings.Fields(line[i+8:])[0], ",")
		}
		if !strings.HasPrefix(line, ";") && strings.TrimSpace(line) != "" {
			f := strings.Fields(line)
			if len(f) >= 5 && f[3] == qtype {
				answers = append(answers, strings.Join(f[4:], " "))
			}
		}
	}
	return status, answers
}

// waitListed polls dig until name answers (mining runs right after the
// commit, not inside it).
func waitListed(t *testing.T, addr, name string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if st, _ := dig(t, addr, name, "A"); st == "NOERROR" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never listed", name)
}

// indicatorStream collects the data of "indicator" events.
func indicatorStream(t *testing.T, base string) chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+e2eRead)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v", err)
	}
	c := make(chan string, 100)
	ready := make(chan struct{})
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		isInd := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": subscribed":
				close(ready)
			case line == "event: indicator":
				isInd = true
			case strings.HasPrefix(line, "data: ") && isInd:
				c <- line[6:]
			case line == "":
				isInd = false
			}
		}
	}()
	<-ready
	return c
}

func waitIndicatorEvent(t *testing.T, c chan string, want ...string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case d := <-c:
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(d, w)
			}
			if ok {
				return
			}
		case <-timeout:
			t.Fatalf("no indicator event with %q", want)
		}
	}
}

// TestBlocklistOverRealBinary: a trap hit from a public origin lists its
// IP and its link's domain in the DNS zones, as dig sees them; delisting
// by hand and expiry (a restart with the clock moved on) answer
// NXDOMAIN; the RFC 5782 test entries answer; and the trap's address and
// domain are in no zone, feed or API answer.
func TestBlocklistOverRealBinary(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is missing: install Debian's bind9-dnsutils (scripts/test does)")
	}
	dir := t.TempDir()
	cfg := writeConfig(t, dir, intelConfig())
	d := startDaemon(t, dir, "-config", cfg)
	base, dnsA := httpAddr(t, d), dnsAddr(t, d)
	events := indicatorStream(t, base)

	if _, err := send(d.addr, "bounce@spam-domain.biz", []string{"victim@honey.catchall-mail.com"}, []byte(intelTrapHit)); err != nil {
		t.Fatal(err)
	}
	waitListed(t, dnsA, "11.120.142.45.bl.e2e.example")
	for _, c := range []struct{ name, txt string }{
		{"11.120.142.45.bl.e2e.example", "/api/v1/indicators/ip/45.142.120.11"},
		{"spam-domain.biz.dbl.e2e.example", "/api/v1/indicators/domain/spam-domain.biz"},
		{"click.spam-domain.biz.dbl.e2e.example", "/api/v1/indicators/domain/spam-domain.biz"},
	} {
		if st, a := dig(t, dnsA, c.name, "A"); st != "NOERROR" || len(a) != 1 || a[0] != "127.0.0.2" {
			t.Errorf("%s A: %s %q", c.name, st, a)
		}
		if st, a := dig(t, dnsA, c.name, "TXT"); st != "NOERROR" || len(a) != 1 || !strings.Contains(a[0], "spamtrap") || !strings.Contains(a[0], c.txt) {
			t.Errorf("%s TXT: %s %q", c.name, st, a)
		}
	}
	waitIndicatorEvent(t, events, `"type":"listed"`, `"value":"45.142.120.11"`)

	// RFC 5782 section 5 test entries, and names outside the zones.
	for _, c := range []struct{ name, status string }{
		{"2.0.0.127.bl.e2e.example", "NOERROR"},
		{"1.0.0.127.bl.e2e.example", "NXDOMAIN"},
		{"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.e2e.example", "NOERROR"},
		{"1.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.bl.e2e.example", "NXDOMAIN"},
		{"test.dbl.e2e.example", "NOERROR"},
		{"invalid.dbl.e2e.example", "NXDOMAIN"},
		{"spam-domain.biz", "REFUSED"},
		// The trap is never listed.
		{"catchall-mail.com.dbl.e2e.example", "NXDOMAIN"},
		{"honey.catchall-mail.com.dbl.e2e.example", "NXDOMAIN"},
	} {
		if st, _ := dig(t, dnsA, c.name, "A"); st != c.status {
			t.Errorf("%s: %s, want %s", c.name, st, c.status)
		}
	}
	// Nothing the API or the feeds say names the trap.
	var all strings.Builder
	for _, p := range []string{"/api/v1/indicators", "/api/v1/blocklist/ip.txt", "/api/v1/blocklist/domain.txt",
		"/api/v1/blocklist/url.txt", "/api/v1/blocklist/email.txt", "/api/v1/indicators/domain/spam-domain.biz"} {
		r := apiDo(t, "GET", base+p, e2eRead, "", nil)
		if r.code != 200 {
			t.Fatalf("GET %s: %d %s", p, r.code, r.body)
		}
		all.Write(r.body)
	}
	for _, leak := range []string{"catchall-mail", "victim", "redacted"} {
		if strings.Contains(all.String(), leak) {
			t.Errorf("the API names %q:\n%s", leak, all.String())
		}
	}
	if !strings.Contains(all.String(), "https://click.spam-domain.biz/x") || !strings.Contains(all.String(), "45.142.120.11\n") {
		t.Errorf("feeds lack the indicators:\n%s", all.String())
	}

	m := string(apiDo(t, "GET", base+"/metrics", "", "", nil).body)
	for _, want := range []string{`xarfd_intel_listed{kind="ip"} 1`, `xarfd_intel_listed{kind="domain"} 1`,
		`xarfd_intel_hits_total{channel="trap"}`, `xarfd_dnsbl_queries_total{rcode="NXDOMAIN",zone="ip"}`,
		`xarfd_dnsbl_queries_total{rcode="REFUSED",zone="other"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Delisting by hand needs submit, keeps the reason, and answers NXDOMAIN.
	if r := apiDo(t, "DELETE", base+"/api/v1/indicators/ip/45.142.120.11", e2eRead, "application/json", []byte(`{"reason":"x"}`)); r.code != 403 {
		t.Errorf("delist with a read token: %d", r.code)
	}
	if r := apiDo(t, "DELETE", base+"/api/v1/indicators/ip/45.142.120.11", e2eSubmit, "application/json", []byte(`{"reason":"host cleaned, ticket 42"}`)); r.code != 200 {
		t.Fatalf("delist: %d %s", r.code, r.body)
	}
	if st, _ := dig(t, dnsA, "11.120.142.45.bl.e2e.example", "A"); st != "NXDOMAIN" {
		t.Errorf("after delisting: %s", st)
	}
	waitIndicatorEvent(t, events, `"type":"delisted"`, `"value":"45.142.120.11"`)
	r := apiDo(t, "GET", base+"/api/v1/indicators/ip/45.142.120.11", e2eRead, "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), "host cleaned, ticket 42") || !strings.Contains(string(r.body), `"listed":false`) {
		t.Errorf("after delisting: %d %s", r.code, r.body)
	}
	d.stop()

	// Expiry: the same data a day and a bit later.
	t.Setenv("XARFD_TEST_CLOCK_OFFSET", "25h")
	d = startDaemon(t, dir, "-config", cfg)
	base, dnsA = httpAddr(t, d), dnsAddr(t, d)
	if st, _ := dig(t, dnsA, "spam-domain.biz.dbl.e2e.example", "A"); st != "NXDOMAIN" {
		t.Errorf("25h after the last hit: %s", st)
	}
	if st, _ := dig(t, dnsA, "2.0.0.127.bl.e2e.example", "A"); st != "NOERROR" {
		t.Errorf("test entry after expiry: %s", st)
	}
	r = apiDo(t, "GET", base+"/api/v1/indicators/domain/spam-domain.biz", e2eRead, "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), "expired") {
		t.Errorf("after expiry: %d %s", r.code, r.body)
	}
	if r := apiDo(t, "GET", base+"/api/v1/blocklist/domain.txt", e2eRead, "", nil); strings.TrimSpace(string(r.body)) != "" {
		t.Errorf("feed after expiry: %q", r.body)
	}
	d.stop()
}

// TestParseIndicators: xarfd parse -indicators prints what intel would
// extract, without the trap address.
func TestParseIndicators(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, intelConfig())
	msg := filepath.Join(dir, "hit.eml")
	os.WriteFile(msg, []byte(intelTrapHit), 0o600)
	code, out, errOut := runXarfd(t, "parse", "-config", cfg, "-indicators", "-rcpt", "victim@honey.catchall-mail.com", msg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{`"value":"45.142.120.11"`, `"value":"spam-domain.biz"`, `"value":"https://click.spam-domain.biz/x"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in %s", want, out)
		}
	}
	if strings.Contains(out, "catchall-mail") || strings.Contains(out, "victim") {
		t.Errorf("the trap leaks: %s", out)
	}
}

// TestBlocklistAfterSIGKILL: a trap hit acknowledged with 250 is listed
// even when the daemon is killed right after the reply, before or while
// mining: the worker resumes from its cursor in the store.
func TestBlocklistAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, intelConfig())
	d := startDaemon(t, dir, "-config", cfg)
	if _, err := send(d.addr, "bounce@spam-domain.biz", []string{"victim@honey.catchall-mail.com"}, []byte(intelTrapHit)); err != nil {
		t.Fatal(err)
	}
	d.kill()
	d = startDaemon(t, dir, "-config", cfg)
	dnsA := dnsAddr(t, d)
	waitListed(t, dnsA, "11.120.142.45.bl.e2e.example")
	if st, _ := dig(t, dnsA, "spam-domain.biz.dbl.e2e.example", "A"); st != "NOERROR" {
		t.Errorf("domain after SIGKILL: %s", st)
	}
	r := apiDo(t, "GET", httpAddr(t, d)+"/api/v1/indicators/ip/45.142.120.11", e2eRead, "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), `"total_hits":1`) {
		t.Errorf("hits after SIGKILL: %d %s", r.code, r.body)
	}
	d.stop()
}
