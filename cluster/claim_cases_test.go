package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
)

// claimMailbox is the subscribers' side: it records each notification.
type claimMailbox struct {
	mu  sync.Mutex
	got []string // recipient of each mail
}

func (b *claimMailbox) Send(_ context.Context, _ string, to []string, _ []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, strings.Join(to, ","))
	return nil
}

func (b *claimMailbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

func claimCasesConfig(t *testing.T, dir, subscribers string) *config.Config {
	t.Helper()
	leases := filepath.Join(dir, "leases.csv")
	if err := os.WriteFile(leases, []byte("ip,port_first,port_last,start,end,subscriber_id,email\n192.0.2.10,,,2026-11-01T00:00:00Z,,alice,alice@home.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
hostname: cases.test
sender: {org: Home ISP, contact: abuse@home.example, domain: home.example}
own_networks: ["192.0.2.0/24"]
channels:
  - {name: fbl, kind: arf, addresses: [fbl@cases.test], uses: [own, store]}
subscribers:
  assignments_file: `+leases+`
`+subscribers), "cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func claimComplaint(ip string, at time.Time, n int) []byte {
	return []byte(fmt.Sprintf("From: FBL <fbl@isp.example>\r\nTo: fbl@cases.test\r\nSubject: FW: spam\r\nDate: %[2]s\r\nMessage-ID: <c%[3]d@isp.example>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n"+
		"--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ExampleFBL/2.0\r\nVersion: 1\r\nArrival-Date: %[2]s\r\nSource-IP: %[1]s\r\n\r\n"+
		"--b1\r\nContent-Type: message/rfc822\r\n\r\nReceived: from pc.subscriber.example ([%[1]s]) by mx.isp.example; %[2]s\r\nFrom: Spammer <spam@subscriber.example>\r\nTo: Victim <victim@isp.example>\r\nSubject: pills %[3]d\r\nMessage-ID: <spam%[3]d@subscriber.example>\r\n\r\nbuy now\r\n--b1--\r\n",
		ip, at.Format(time.RFC1123Z), n))
}

// claimCaseEnv are two nodes' case managers whose stores hold the same
// reports (a copy of one store file), on one NATS server, with a test
// clock that both managers and the claims' records read.
type claimCaseEnv struct {
	cfg   *config.Config
	nodes []claimCaseNode
	mu    sync.Mutex
	now   time.Time
	at    time.Time
}

type claimCaseNode struct {
	st *store.Store
	in *ingest.Ingester
	m  *cases.Manager
}

func (c *claimCaseEnv) clock() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *claimCaseEnv) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *claimCaseEnv) complain(t *testing.T, in *ingest.Ingester, n int) {
	t.Helper()
	res, err := in.Accept(store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), MailFrom: "fbl@isp.example", Via: "smtp"},
		[]ingest.Delivery{{Channel: c.cfg.Channel("fbl"), Rcpts: []string{"fbl@cases.test"}}}, claimComplaint("192.0.2.10", c.at.Add(time.Duration(n)*time.Minute), n))
	if err != nil || !res[0].Report {
		t.Fatalf("ingest: %v %+v", err, res)
	}
}

// newCaseNodes ingests complaints 1..n into one store, copies it, and
// starts a case manager on each copy with opt (Claims and
// RestrictClaims set per node).
func claimCaseNodes(t *testing.T, s *server.Server, subscribers string, n int, opt cases.Options) *claimCaseEnv {
	t.Helper()
	c := &claimCaseEnv{cfg: claimCasesConfig(t, t.TempDir(), subscribers),
		now: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), at: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	dirA, dirB := t.TempDir(), t.TempDir()
	st, err := store.Open(dirA, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(c.cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		c.complain(t, in, i)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dirA, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, store.FileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, dir := range []string{dirA, dirB} {
		st := storetest.Open(t, dir)
		in, err := ingest.New(c.cfg, st, ingest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		claims := make([]*Claims, 2)
		for j, kind := range []string{metrics.ClaimNotification, metrics.ClaimRestrict} {
			claims[j], _ = claimNode(t, s, fmt.Sprintf("mx%d", i+1), metrics.New())
			claims[j].opt.Kind, claims[j].opt.Window, claims[j].opt.Now = kind, claims[j].opt.Horizon, c.clock
		}
		o := opt
		o.Claims, o.RestrictClaims, o.Now = claims[0], claims[1], c.clock
		o.Logger = zerolog.New(zerolog.NewTestWriter(t)).With().Str("node", fmt.Sprintf("mx%d", i+1)).Logger()
		m, err := cases.New(c.cfg, st, o)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, claimCaseNode{st, in, m})
	}
	return c
}

// caseOf returns a node's case of alice.
func claimCaseOf(n claimCaseNode) *store.Case {
	var c *store.Case
	n.st.ForEachCase(func(x *store.Case) error {
		if x.Key == "subscriber:alice" && c == nil {
			c = x
		}
		return nil
	})
	return c
}

// run runs Step and Due on both nodes at once until done holds for
// both nodes' cases; the clock moves two minutes a round, so that a node
// that lost a race asks again.
func (c *claimCaseEnv) run(t *testing.T, what string, done func(*store.Case) (bool, string)) {
	t.Helper()
	claimWaitFor(t, what, func() (bool, string) {
		var wg sync.WaitGroup
		for _, n := range c.nodes {
			wg.Go(func() {
				for more := true; more; {
					more, _ = n.m.Step(context.Background())
				}
				_ = n.m.Due(context.Background())
			})
		}
		wg.Wait()
		c.advance(2 * time.Minute)
		var state []string
		ok := true
		for _, n := range c.nodes {
			cs := claimCaseOf(n)
			if cs == nil {
				ok = false
				continue
			}
			d, st := done(cs)
			ok = ok && d
			state = append(state, st)
		}
		return ok, strings.Join(state, "; ")
	})
}

// Two nodes' case managers hold the same case (each built it from the
// same reports): the subscriber gets one notification, and the node
// that did not send it records who did; the next digest after
// min_interval is again sent once.
func TestTwoCaseManagersNotifyOnce(t *testing.T) {
	s := claimNATS(t)
	box := &claimMailbox{}
	c := claimCaseNodes(t, s, "  notify: {enabled: true, from: abuse@home.example, min_interval: 24h}\n  restrict: {after: {reports: 0, trap_hits: 0}}\n", 2, cases.Options{Mailer: box})
	notified := func(total int) func(*store.Case) (bool, string) {
		return func(cs *store.Case) (bool, string) {
			return cs.NotifiedUpTo == total, fmt.Sprintf("notified up to %d, %d notifications", cs.NotifiedUpTo, len(cs.Notifications))
		}
	}
	c.run(t, "both nodes notified of 2 reports", notified(2))
	if got := box.count(); got != 1 {
		t.Fatalf("%d notifications of the first digest, want 1", got)
	}
	elsewhere := 0
	for _, n := range c.nodes {
		for _, d := range claimCaseOf(n).Notifications {
			if strings.HasPrefix(d.Result, "sent by cluster node mx") {
				elsewhere++
			}
		}
	}
	if elsewhere != 1 {
		t.Errorf("%d nodes record the digest as sent by the other, want 1", elsewhere)
	}

	// A third report reaches both nodes; after min_interval one digest.
	for _, n := range c.nodes {
		c.complain(t, n.in, 3)
	}
	c.advance(25 * time.Hour)
	c.run(t, "both nodes notified of 3 reports", notified(3))
	if got := box.count(); got != 2 {
		t.Fatalf("%d notifications after the second digest, want 2", got)
	}
}

// Two nodes' case managers cross the restrict threshold of the same
// case: the webhook (a real HTTP server on 127.0.0.1) is called once,
// both cases end restricted, and one names the node that called.
func TestTwoCaseManagersRestrictOnce(t *testing.T) {
	s := claimNATS(t)
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		fmt.Fprint(w, `{"ok":true}`)
	}))
	defer srv.Close()
	secret := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(secret, []byte("0123456789abcdef-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := claimCaseNodes(t, s, fmt.Sprintf("  restrict: {enabled: true, after: {reports: 2, window: 1h}, webhook: {url: %q, secret_file: %s, timeout: 5s}}\n", srv.URL, secret), 2, cases.Options{})
	c.run(t, "both cases restricted", func(cs *store.Case) (bool, string) {
		return cs.State == store.CaseRestricted, cs.State
	})
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("the webhook was called %d times, want once", calls)
	}
	elsewhere := 0
	for _, n := range c.nodes {
		cs := claimCaseOf(n)
		if cs.Webhook == nil || cs.Webhook.Status != cases.CallDone {
			t.Errorf("webhook %+v", cs.Webhook)
			continue
		}
		if strings.Contains(strings.Join(cs.Webhook.Answers, "\n"), "called by cluster node mx") {
			elsewhere++
		}
	}
	if elsewhere != 1 {
		t.Errorf("%d nodes record the call as made by the other, want 1", elsewhere)
	}
}
