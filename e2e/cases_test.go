package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/internal/leakcheck"
	"github.com/xarfd/xarfd/store"
)

// Own addresses of the case tests: 192.88.99.200 changes hands at
// noon; 192.88.99.201 is a static customer's.
const (
	ownLeased = "192.88.99.200"
	ownStatic = "192.88.99.201"
)

const casesConfig = `
hostname: mx.e2e.example
sender: {org: E2E Net, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@e2e.example"]
    redact: {recipients: true}
    uses: [own, store]
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
    redact: {recipients: true}
    uses: [own, store]
reporter:
  smarthost: {address: %q, tls: none}
  dkim: {domain: e2e.example, selector: cases, private_key_file: %q}
own_networks: ["192.88.99.128/25"]
subscribers:
  static_file: %s
  assignments_file: %s
  notify: {enabled: %v, from: abuse@e2e.example}
  restrict:
    enabled: %v
    after: {reports: 5, trap_hits: 1, window: 24h}
    webhook: {url: %q, secret_file: %s, timeout: 5s}
`

// complaintAt is an ARF complaint about mail from origin that arrived
// at at.
func complaintAt(t *testing.T, origin string, at time.Time, n int) []byte {
	t.Helper()
	orig := spamHit(origin, "complainer@mailbox.example", fmt.Sprintf("weight loss %d", n), "complaint body")
	b, err := arf.Build(arf.BuildRequest{
		From: "fbl@mailbox.example", To: "fbl@e2e.example", Subject: "FW: weight loss", MessageID: fmt.Sprintf("<fbl%d@mailbox.example>", n), Date: at,
		Feedback: &arf.Report{FeedbackType: "abuse", SourceIP: &arf.IP{Raw: origin, Addr: netip.MustParseAddr(origin)},
			ArrivalDate: &arf.Date{Time: at}, OriginalRcptTo: []string{"complainer@mailbox.example"}},
		Original: orig,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// webhookServer verifies each call's signature and answers 500 to the
// first two calls, then 200.
type webhookServer struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []cases.WebhookBody
	errors []error
}

func startWebhook(t *testing.T, secret []byte) *webhookServer {
	w := &webhookServer{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b cases.WebhookBody
		err := cases.Verify(secret, r.Header.Get(cases.HeaderTimestamp), r.Header.Get(cases.HeaderSignature), body, time.Now(), 5*time.Minute)
		if err == nil {
			err = json.Unmarshal(body, &b)
		}
		w.mu.Lock()
		w.calls = append(w.calls, b)
		w.errors = append(w.errors, err)
		n := len(w.calls)
		w.mu.Unlock()
		if err != nil {
			http.Error(rw, "bad signature", 401)
			return
		}
		if n <= 2 {
			http.Error(rw, "provisioning busy", 500)
			return
		}
		fmt.Fprint(rw, `{"restricted":true}`)
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhookServer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.calls)
}

func listCases(t *testing.T, base string) map[string]store.Case {
	t.Helper()
	r := apiDo(t, "GET", base+"/api/v1/cases", "", "", nil)
	if r.code != 200 {
		t.Fatalf("cases: %d %s", r.code, r.body)
	}
	var p struct{ Cases []store.Case }
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Case{}
	for _, c := range p.Cases {
		out[c.Key] = c
	}
	return out
}

// runCases starts a daemon on the case configuration, feeds it two
// complaints about ownLeased (before and after its lease changed hands)
// and a trap hit from ownStatic, and waits until settled says so.
func runCases(t *testing.T, mp *mailpit, wh *webhookServer, secret []byte, dkimKey string, enabled bool, settled func(map[string]store.Case) bool) (map[string]store.Case, string, *daemon) {
	t.Helper()
	dir := t.TempDir()
	static := filepath.Join(dir, "subscribers.csv")
	os.WriteFile(static, []byte("network,subscriber_id,email,name\n"+ownStatic+"/32,carol,carol@home.e2e.example,Carol\n"), 0o600)
	leases := filepath.Join(dir, "leases.jsonl")
	os.WriteFile(leases, []byte(`{"ip":"`+ownLeased+`","start":"2026-11-01T00:00:00Z","end":"2026-11-27T12:00:00Z","subscriber_id":"alice","email":"alice@home.e2e.example"}
{"ip":"`+ownLeased+`","start":"2026-11-27T12:00:00Z","subscriber_id":"bob","email":"bob@home.e2e.example"}
not json at all
`), 0o600)
	key := filepath.Join(dir, "webhook.key")
	os.WriteFile(key, secret, 0o600)
	cfg := writeConfig(t, dir, fmt.Sprintf(casesConfig, mp.smtp, dkimKey, static, leases, enabled, enabled, wh.URL, key))
	dm := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, dm)
	for i, at := range []string{"2026-11-27T10:00:00Z", "2026-11-27T14:00:00Z"} {
		tm, _ := time.Parse(time.RFC3339, at)
		if _, err := send(dm.addr, "fbl@mailbox.example", []string{"fbl@e2e.example"}, complaintAt(t, ownLeased, tm, i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := send(dm.addr, "bounce@spam.example", []string{"carol.trap@trap.e2e.example"},
		spamHit(ownStatic, "carol.trap@trap.e2e.example", "cheap pills", "buy now")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		cs := listCases(t, base)
		if settled(cs) {
			return cs, base, dm
		}
		if time.Now().After(deadline) {
			t.Fatalf("cases did not settle: %+v", cs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCasesEndToEnd(t *testing.T) {
	mp := startMailpit(t)
	secret := []byte("e2e-webhook-secret-0123456789")
	wh := startWebhook(t, secret)
	dns := startTestDNS(t)
	key := dkimKey(t, dns, t.TempDir(), "cases", "e2e.example")

	// Dry run (the default): cases, notifications and the restrict call
	// are recorded; nothing is sent.
	dry, _, dm := runCases(t, mp, wh, secret, key, false, func(cs map[string]store.Case) bool {
		c := cs["subscriber:carol"]
		return len(cs) == 3 && c.State == store.CaseRestricted && len(cs["subscriber:bob"].Notifications) == 1
	})
	for _, k := range []string{"subscriber:alice", "subscriber:bob", "subscriber:carol"} {
		if n := dry[k].Notifications; len(n) != 1 || !n[0].DryRun {
			t.Errorf("dry run %s notifications %+v", k, n)
		}
	}
	if w := dry["subscriber:carol"].Webhook; w == nil || w.Status != cases.CallDryRun {
		t.Errorf("dry run webhook %+v", w)
	}
	dm.stop()
	if n := len(mp.messages(t)); n != 0 || wh.count() != 0 {
		t.Fatalf("dry run sent %d mails and made %d webhook calls", n, wh.count())
	}

	// Enabled.
	cs, base, dm := runCases(t, mp, wh, secret, key, true, func(cs map[string]store.Case) bool {
		c := cs["subscriber:carol"]
		return len(cs) == 3 && c.State == store.CaseRestricted && len(cs["subscriber:alice"].Notifications) == 1 &&
			len(cs["subscriber:bob"].Notifications) == 1
	})
	alice, bob, carol := cs["subscriber:alice"], cs["subscriber:bob"], cs["subscriber:carol"]
	if alice.Complaints != 1 || bob.Complaints != 1 || alice.Reports[0].At.Hour() != 10 || bob.Reports[0].At.Hour() != 14 {
		t.Errorf("the lease change did not split the complaints: alice %+v bob %+v", alice, bob)
	}
	if carol.TrapHits != 1 || carol.MatchSource != "static" || carol.Webhook.Attempts != 3 || carol.Webhook.Status != cases.CallDone ||
		!strings.Contains(carol.Webhook.Answers[2], "200") || !strings.Contains(carol.Webhook.Answers[0], "500") {
		t.Errorf("carol %+v webhook %+v", carol, carol.Webhook)
	}
	wh.mu.Lock()
	for i, err := range wh.errors {
		if err != nil {
			t.Errorf("webhook call %d: %v", i, err)
		}
	}
	if b := wh.calls[2]; b.Action != "restrict" || b.Subscriber.ID != "carol" || b.TrapHits != 1 || b.IPs[0] != ownStatic {
		t.Errorf("webhook body %+v", b)
	}
	wh.mu.Unlock()

	msgs := mp.messages(t)
	to := map[string]int{}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Errorf("recipients %+v", m.To)
			continue
		}
		to[m.To[0].Address]++
		raw := mp.raw(t, m.ID)
		if !strings.Contains(string(raw), "a device on your connection sends spam") {
			t.Errorf("notification text:\n%s", raw)
		}
		leakcheck.Check(t, raw, []string{"complainer@mailbox.example", "carol.trap@trap.e2e.example"})
		// The same outbound path as reports: DKIM-signed.
		verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: dns.lookupTXT})
		if err != nil || len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != "e2e.example" {
			t.Errorf("DKIM: %v %+v", err, verifs)
		}
	}
	if len(msgs) != 3 || to["alice@home.e2e.example"] != 1 || to["bob@home.e2e.example"] != 1 || to["carol@home.e2e.example"] != 1 {
		t.Errorf("notifications went to %v", to)
	}

	// Resolve carol's case through the API: unrestrict is called.
	r := apiDo(t, "POST", base+"/api/v1/cases/"+carol.ID.String()+"/resolve", "", "application/json", []byte(`{"reason":"customer removed the malware"}`))
	if r.code != 200 {
		t.Fatalf("resolve: %d %s", r.code, r.body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for wh.count() < 4 {
		if time.Now().After(deadline) {
			t.Fatal("no unrestrict call")
		}
		time.Sleep(100 * time.Millisecond)
	}
	wh.mu.Lock()
	if b := wh.calls[3]; b.Action != "unrestrict" || b.Reason != "customer removed the malware" {
		t.Errorf("unrestrict %+v", b)
	}
	wh.mu.Unlock()
	if r := apiDo(t, "GET", base+"/metrics", "", "", nil); !strings.Contains(string(r.body), "\nxarfd_cases_active ") {
		t.Error("/metrics lacks xarfd_cases_active")
	}
	code, out, stderr := runXarfd(t, "cases", "-api", base, "-state", "resolved")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"subscriber_id":"carol"`) {
		t.Errorf("xarfd cases: %d %q %s", code, out, stderr)
	}
	if !strings.Contains(dm.logs.String(), "line 3") {
		t.Errorf("the malformed lease line is not reported:\n%s", tail(dm.logs.String(), 30))
	}
	dm.stop()
}

// TestCasesSurviveSIGKILL: reports acknowledged just before a SIGKILL
// are each counted once on the case after the restart, whatever the
// worker had done when it died.
func TestCasesSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "subscribers.csv")
	os.WriteFile(static, []byte(ownLeased+",alice,alice@home.e2e.example,Alice\n"), 0o600)
	cfg := writeConfig(t, dir, `
hostname: mx.e2e.example
sender: {org: E2E Net, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@e2e.example"], redact: {recipients: true}, uses: [own, store]}
own_networks: ["192.88.99.128/25"]
subscribers: {static_file: `+static+`}
`)
	at, _ := time.Parse(time.RFC3339, "2026-11-27T10:00:00Z")
	dm := startDaemon(t, dir, "-config", cfg)
	for i := range 5 {
		if _, err := send(dm.addr, "fbl@mailbox.example", []string{"fbl@e2e.example"}, complaintAt(t, ownLeased, at.Add(time.Duration(i)*time.Minute), i)); err != nil {
			t.Fatal(err)
		}
	}
	dm.kill()
	dm = startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, dm)
	wait := func(n int) store.Case {
		deadline := time.Now().Add(60 * time.Second)
		for {
			c := listCases(t, base)["subscriber:alice"]
			if c.Complaints >= n {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("alice's case did not reach %d complaints: %+v", n, c)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if c := wait(5); c.Complaints != 5 || len(c.Reports) != 5 {
		t.Fatalf("after the restart: %d complaints, %d reports", c.Complaints, len(c.Reports))
	}
	// One more: the worker has passed everything before it, so the
	// count is exact.
	if _, err := send(dm.addr, "fbl@mailbox.example", []string{"fbl@e2e.example"}, complaintAt(t, ownLeased, at.Add(time.Hour), 9)); err != nil {
		t.Fatal(err)
	}
	if c := wait(6); c.Complaints != 6 || len(c.Reports) != 6 {
		t.Fatalf("after one more: %d complaints, %d reports", c.Complaints, len(c.Reports))
	}
	dm.stop()
}
