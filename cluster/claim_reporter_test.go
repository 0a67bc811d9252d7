package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/mailpittest"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
)

// The tests below run two reporters, as two nodes would: each with its
// own store holding the same outbox entries (a copy of one store file,
// as every node's read model holds every entry), its own connection to
// one embedded NATS server, and one real Mailpit as the smarthost. Every
// report must arrive at Mailpit exactly once.

func claimFreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type claimMailpit struct{ smtp, api string }

// claimStartMailpit runs the desk both nodes deliver to
// (internal/mailpittest).
func claimStartMailpit(t *testing.T) *claimMailpit {
	t.Helper()
	m := mailpittest.Start(t)
	return &claimMailpit{smtp: m.SMTP, api: m.API}
}

// arrivals counts the messages Mailpit holds per report id (from the
// Message-ID <xarfd.<id>@<hostname>>, whichever node sent it).
func (m *claimMailpit) arrivals(t *testing.T) (map[string]int, int) {
	t.Helper()
	resp, err := http.Get("http://" + m.api + "/api/v1/messages?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var page struct {
		Messages []struct{ MessageID string }
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("claimMailpit messages: %v: %s", err, b)
	}
	out := map[string]int{}
	for _, msg := range page.Messages {
		id, _, _ := strings.Cut(strings.TrimPrefix(msg.MessageID, "xarfd."), "@")
		out[id]++
	}
	return out, len(page.Messages)
}

const claimOriginIP = "192.88.99.10" // public, assigned to nobody (RFC 7526)

func claimNodeConfig(t *testing.T, hostname, smarthost string, perHour int) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
hostname: %s
sender: {org: Test Net, contact: abuse@reporter.test, domain: reporter.test}
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@origin.test}]
reporter:
  enabled: true
  from: reports@reporter.test
  smarthost: {address: %q, tls: none}
  per_contact_per_hour: %d
  retry: {first: 100ms, give_up_after: 1h}
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.reporter.test"]
    redact: {recipients: true}
`, hostname, smarthost, perHour)), hostname+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// twoStores ingests n distinct incidents into one store and copies it:
// two stores with the same outbox entries, as two nodes hold them.
func claimTwoStores(t *testing.T, cfg *config.Config, n int) (a, b *store.Store, ids []store.ID) {
	t.Helper()
	dirA, dirB := t.TempDir(), t.TempDir()
	st, err := store.Open(dirA, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		msg := fmt.Sprintf("Received: from spam.example (spam.example [%s]) by mx.reporter.test with ESMTP; Fri, 27 Nov 2026 10:00:00 +0000\r\n"+
			"From: Spammer <spammer@spam.example>\r\nTo: x@trap.reporter.test\r\nSubject: offer %d\r\nMessage-ID: <%d@spam.example>\r\n\r\nincident number %d\r\n", claimOriginIP, i, i, i)
		res, err := in.Accept(store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), PeerPort: 40000, MailFrom: "bounce@spam.example", Via: "smtp"},
			[]ingest.Delivery{{Channel: &cfg.Channels[0], Rcpts: []string{"x@trap.reporter.test"}}}, []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].Report {
			t.Fatalf("no report: %s", res[0].Reason)
		}
		ids = append(ids, res[0].ID)
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
	return storetest.Open(t, dirA), storetest.Open(t, dirB), ids
}

// claimRunner is one node's reporter running until stop.
type claimRunner struct {
	rep  *reporter.Reporter
	m    *metrics.Metrics
	stop context.CancelFunc
	done chan struct{}
}

// startReporter runs a node's reporter; it returns the node's NATS
// connection too, for a test to cut.
func claimStartReporter(t *testing.T, s *server.Server, name string, cfg *config.Config, st *store.Store, opt reporter.Options) (*claimRunner, *nats.Conn) {
	t.Helper()
	m := metrics.New()
	claims, nc := claimNode(t, s, name, m)
	return claimRun(t, name, cfg, st, opt, claims, m), nc
}

// claimRun runs a node's reporter on claims.
func claimRun(t *testing.T, name string, cfg *config.Config, st *store.Store, opt reporter.Options, claims *Claims, m *metrics.Metrics) *claimRunner {
	t.Helper()
	opt.Claims, opt.Metrics = claims, m
	opt.Logger = zerolog.New(zerolog.NewTestWriter(t)).With().Str("node", name).Logger()
	opt.Poll = 20 * time.Millisecond
	opt.Lease = cmp.Or(opt.Lease, 3*time.Second)
	rep, err := reporter.New(cfg, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &claimRunner{rep: rep, m: m, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		rep.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// waitFor polls cond until it holds, failing t after a minute with what
// cond last said.
func claimWaitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached; %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// statuses counts the entries of st by status, and how many sent ones
// another node sent.
func claimStatuses(t *testing.T, st *store.Store, ids []store.ID) (map[store.OutboxStatus]int, int) {
	t.Helper()
	out, elsewhere := map[store.OutboxStatus]int{}, 0
	for _, id := range ids {
		e, err := st.GetOutbox(id)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Status]++
		if e.SentBy != "" {
			elsewhere++
		}
	}
	return out, elsewhere
}

func claimExactlyOnce(t *testing.T, mp *claimMailpit, ids []store.ID) {
	t.Helper()
	got, total := mp.arrivals(t)
	for _, id := range ids {
		if got[id.String()] != 1 {
			t.Errorf("report %s arrived %d times", id, got[id.String()])
		}
	}
	if total != len(ids) {
		t.Errorf("claimMailpit holds %d messages for %d reports", total, len(ids))
	}
}

// Two nodes work through the same outbox at once: every report arrives
// once, both nodes record all of them sent, and the one that did not
// send a report names the node that did.
func TestTwoReportersSendEachReportOnce(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	const n = 12
	cfgA := claimNodeConfig(t, "mx1.reporter.test", mp.smtp, 1000)
	cfgB := claimNodeConfig(t, "mx2.reporter.test", mp.smtp, 1000)
	stA, stB, ids := claimTwoStores(t, cfgA, n)
	a, _ := claimStartReporter(t, s, "mx1", cfgA, stA, reporter.Options{})
	b, _ := claimStartReporter(t, s, "mx2", cfgB, stB, reporter.Options{})

	claimWaitFor(t, "all sent on both nodes", func() (bool, string) {
		sa, ea := claimStatuses(t, stA, ids)
		sb, eb := claimStatuses(t, stB, ids)
		return sa[store.OutboxSent] == n && sb[store.OutboxSent] == n,
			fmt.Sprintf("mx1 %v (%d elsewhere), mx2 %v (%d elsewhere)", sa, ea, sb, eb)
	})
	a.stop()
	b.stop()
	<-a.done
	<-b.done
	claimExactlyOnce(t, mp, ids)
	_, ea := claimStatuses(t, stA, ids)
	_, eb := claimStatuses(t, stB, ids)
	if ea+eb != n {
		t.Errorf("%d + %d entries name another node as sender, want %d in all", ea, eb, n)
	}
	for _, id := range ids {
		x, _ := stA.GetOutbox(id)
		y, _ := stB.GetOutbox(id)
		if (x.SentBy == "") == (y.SentBy == "") || (x.SentBy != "" && x.SentBy != "mx2") || (y.SentBy != "" && y.SentBy != "mx1") {
			t.Errorf("report %s: sent by %q on mx1, %q on mx2; want exactly one naming the other", id, x.SentBy, y.SentBy)
		}
	}
}

// A node claims a report and dies before sending it (its connection to
// the cluster and its reporter stop at the claim): the other node takes
// the claim over once it expires, and the report arrives once.
func TestTakeoverWhenANodeDiesAfterClaiming(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	const n = 4
	cfgA := claimNodeConfig(t, "mx1.reporter.test", mp.smtp, 1000)
	cfgB := claimNodeConfig(t, "mx2.reporter.test", mp.smtp, 1000)
	stA, stB, ids := claimTwoStores(t, cfgA, n)

	var (
		once    sync.Once
		claimed = make(chan store.ID, 1)
		a       *claimRunner
		nca     *nats.Conn
		started = make(chan struct{})
	)
	hook := func(id store.ID) {
		once.Do(func() {
			<-started   // a and nca are set
			nca.Close() // the node is gone: no refresh, no release
			a.stop()
			claimed <- id
		})
	}
	a, nca = claimStartReporter(t, s, "mx1", cfgA, stA, reporter.Options{Workers: 1, AfterClaim: hook})
	close(started)
	var victim store.ID
	select {
	case victim = <-claimed:
	case <-time.After(time.Minute):
		t.Fatal("mx1 claimed nothing")
	}
	<-a.done
	if got, _ := mp.arrivals(t); len(got) != 0 {
		t.Fatalf("the dead node sent %v", got)
	}

	b, _ := claimStartReporter(t, s, "mx2", cfgB, stB, reporter.Options{})
	claimWaitFor(t, "all sent by mx2", func() (bool, string) {
		sb, _ := claimStatuses(t, stB, ids)
		return sb[store.OutboxSent] == n, fmt.Sprintf("mx2 %v", sb)
	})
	b.stop()
	<-b.done
	claimExactlyOnce(t, mp, ids)
	if got := claimCount(t, b.m, metrics.ClaimTakenOver); got < 1 {
		t.Errorf("mx2 took over %v claims, want the one of %s at least", got, victim)
	}
	if e, _ := stB.GetOutbox(victim); e.SentBy != "" || e.Attempts != 1 {
		t.Errorf("the victim on mx2: sent by %q after %d attempts; want sent by mx2 itself, once", e.SentBy, e.Attempts)
	}
}

// cluster.claim_lease is the TTL of the claims a node's reporter makes,
// whatever lease the reporter itself runs on: with a short one (below
// the floor the configuration enforces, to keep the test short), a
// dead node's claim is taken over by the other node and the report
// arrives once. With the reporter's 15 minutes the takeover would not
// come within claimWaitFor's minute.
func TestClaimLeaseFromConfigTakesOverADeadNode(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	const n = 3
	node := func(hostname, name string) *config.Config {
		cfg := claimNodeConfig(t, hostname, mp.smtp, 1000)
		cfg.Cluster = &config.Cluster{Node: name, Replicas: 1, ClaimLease: config.Duration(2 * time.Second)}
		return cfg
	}
	cfgA, cfgB := node("mx1.reporter.test", "mx1"), node("mx2.reporter.test", "mx2")
	stA, stB, ids := claimTwoStores(t, cfgA, n)
	claims := func(cfg *config.Config, m *metrics.Metrics) (*Claims, *nats.Conn) {
		nc, js := claimConnect(t, s)
		c, err := NewClaims(js, ReportClaimOptions(cfg, cfg.Cluster.Node, cfg.Cluster.Replicas, m))
		if err != nil {
			t.Fatal(err)
		}
		return c, nc
	}

	var (
		once    sync.Once
		claimed = make(chan store.ID, 1)
		a       *claimRunner
		started = make(chan struct{})
	)
	mA := metrics.New()
	cA, ncA := claims(cfgA, mA)
	hook := func(id store.ID) {
		once.Do(func() {
			<-started
			ncA.Close() // the node is gone: no refresh, no release
			a.stop()
			claimed <- id
		})
	}
	a = claimRun(t, "mx1", cfgA, stA, reporter.Options{Workers: 1, AfterClaim: hook, Lease: reporter.DefaultLease}, cA, mA)
	close(started)
	var victim store.ID
	select {
	case victim = <-claimed:
	case <-time.After(time.Minute):
		t.Fatal("mx1 claimed nothing")
	}
	<-a.done

	mB := metrics.New()
	cB, _ := claims(cfgB, mB)
	b := claimRun(t, "mx2", cfgB, stB, reporter.Options{Lease: reporter.DefaultLease}, cB, mB)
	claimWaitFor(t, "all sent by mx2", func() (bool, string) {
		sb, _ := claimStatuses(t, stB, ids)
		return sb[store.OutboxSent] == n, fmt.Sprintf("mx2 %v", sb)
	})
	b.stop()
	<-b.done
	claimExactlyOnce(t, mp, ids)
	if got := claimCount(t, mB, metrics.ClaimTakenOver); got < 1 {
		t.Errorf("mx2 took over %v claims, want the one of %s at least", got, victim)
	}
}

// The contact's rate limit holds across the two nodes: with three an
// hour, three reports arrive in all, the rest wait on both nodes.
func TestRateLimitAcrossTwoReporters(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	const n, perHour = 7, 3
	cfgA := claimNodeConfig(t, "mx1.reporter.test", mp.smtp, perHour)
	cfgB := claimNodeConfig(t, "mx2.reporter.test", mp.smtp, perHour)
	stA, stB, ids := claimTwoStores(t, cfgA, n)
	a, _ := claimStartReporter(t, s, "mx1", cfgA, stA, reporter.Options{})
	b, _ := claimStartReporter(t, s, "mx2", cfgB, stB, reporter.Options{})

	settled := func(st *store.Store) (int, int) {
		sent, waiting := 0, 0
		for _, id := range ids {
			e, err := st.GetOutbox(id)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case e.Status == store.OutboxSent:
				sent++
			case e.Status == store.OutboxPending && strings.HasPrefix(e.Reason, "rate limit:") && e.NextAttempt.After(time.Now().Add(30*time.Minute)):
				waiting++
			}
		}
		return sent, waiting
	}
	claimWaitFor(t, "three sent, the rest waiting, on both nodes", func() (bool, string) {
		sa, wa := settled(stA)
		sb, wb := settled(stB)
		return sa == perHour && sb == perHour && wa == n-perHour && wb == n-perHour,
			fmt.Sprintf("mx1 %d sent %d waiting, mx2 %d sent %d waiting", sa, wa, sb, wb)
	})
	a.stop()
	b.stop()
	<-a.done
	<-b.done
	got, total := mp.arrivals(t)
	if total != perHour || len(got) != perHour {
		t.Fatalf("claimMailpit holds %d messages of %d reports, want %d once each: %v", total, len(got), perHour, got)
	}
}

// An entry older than the claims' horizon may have been sent by a node
// and forgotten since: it is withheld, not sent, until an operator
// requeues it.
func TestOlderThanHorizonIsWithheld(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	cfg := claimNodeConfig(t, "mx1.reporter.test", mp.smtp, 1000)
	st, _, ids := claimTwoStores(t, cfg, 1)
	later := func() time.Time { return time.Now().Add(3 * time.Hour) } // the horizon of claimNode() is 2 h
	a, _ := claimStartReporter(t, s, "mx1", cfg, st, reporter.Options{Now: later})
	claimWaitFor(t, "withheld", func() (bool, string) {
		e, _ := st.GetOutbox(ids[0])
		return e.Status == store.OutboxWithheld, fmt.Sprintf("%s %s", e.Status, e.Reason)
	})
	if e, _ := st.GetOutbox(ids[0]); !strings.Contains(e.Reason, "older than the cluster's memory") {
		t.Fatalf("reason: %s", e.Reason)
	}
	if _, err := st.Requeue(ids[0], later(), "operator"); err != nil {
		t.Fatal(err)
	}
	a.rep.Wake()
	claimWaitFor(t, "sent after requeue", func() (bool, string) {
		e, _ := st.GetOutbox(ids[0])
		return e.Status == store.OutboxSent, fmt.Sprintf("%s %s", e.Status, e.Reason)
	})
	a.stop()
	<-a.done
	claimExactlyOnce(t, mp, ids)
}

// A node that cannot reach NATS sends nothing: its entries are retried
// like after a 4xx, with the reason, and the claim errors are counted.
func TestNoClaimNoSend(t *testing.T) {
	s := claimNATS(t)
	mp := claimStartMailpit(t)
	cfg := claimNodeConfig(t, "mx1.reporter.test", mp.smtp, 1000)
	st, _, ids := claimTwoStores(t, cfg, 2)
	m := metrics.New()
	claims, nc := claimNode(t, s, "mx1", m)
	nc.Close()
	rep, err := reporter.New(cfg, st, reporter.Options{Claims: claims, Metrics: m, Poll: 20 * time.Millisecond,
		Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep.Run(ctx)
	}()
	claimWaitFor(t, "entries retried", func() (bool, string) {
		var state []string
		ok := true
		for _, id := range ids {
			e, _ := st.GetOutbox(id)
			ok = ok && e.Status == store.OutboxPending && e.Retries > 0 && strings.Contains(e.LastError, "claiming the report in the cluster")
			state = append(state, fmt.Sprintf("%s %d %s", e.Status, e.Retries, e.LastError))
		}
		return ok, strings.Join(state, "; ")
	})
	cancel()
	<-done
	if got, _ := mp.arrivals(t); len(got) != 0 {
		t.Fatalf("sent without a claim: %v", got)
	}
	if got := claimCount(t, m, metrics.ClaimError); got < 2 {
		t.Errorf("claim errors counted %v, want 2 at least", got)
	}
}

// dropDesk accepts everything and drops the connection at the end of
// DATA, before it answers: the sender cannot know whether the desk has
// the report.
type dropDesk struct{ data atomic.Int32 }

func (d *dropDesk) NewSession(c *smtp.Conn) (smtp.Session, error) { return &dropSession{d, c}, nil }

type dropSession struct {
	d *dropDesk
	c *smtp.Conn
}

func (s *dropSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *dropSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *dropSession) Reset()                               {}
func (s *dropSession) Logout() error                        { return nil }
func (s *dropSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	s.d.data.Add(1)
	s.c.Conn().Close()
	return errors.New("dropped")
}

// When the desk's answer to a transmitted report is lost, the node keeps
// its claim (neither released nor recorded sent): another node does not
// send the report before the claim's TTL, while the node's own retry
// (same Message-ID) may take it again at once.
func TestUnknownAnswerKeepsTheClaim(t *testing.T) {
	s := claimNATS(t)
	desk := &dropDesk{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(desk)
	srv.Domain = "desk.test"
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	cfg := claimNodeConfig(t, "mx1.reporter.test", l.Addr().String(), 1000)
	cfg.Reporter.Retry.First = config.Duration(time.Hour) // one attempt in this test
	st, _, ids := claimTwoStores(t, cfg, 1)
	a, _ := claimStartReporter(t, s, "mx1", cfg, st, reporter.Options{Lease: time.Minute})
	claimWaitFor(t, "the attempt failed", func() (bool, string) {
		e, _ := st.GetOutbox(ids[0])
		return e.Status == store.OutboxPending && e.Retries == 1, fmt.Sprintf("%s %d %s", e.Status, e.Retries, e.LastError)
	})
	a.stop()
	<-a.done
	if desk.data.Load() != 1 {
		t.Fatalf("%d transmissions, want 1", desk.data.Load())
	}
	e, _ := st.GetOutbox(ids[0])
	b, _ := claimNode(t, s, "mx2", nil)
	ctx := context.Background()
	l2, held, err := b.Claim(ctx, "fp."+e.Fingerprint, ids[0], e.Created, time.Minute)
	if err != nil || l2 != nil || held == nil || held.Sent || held.Node != "mx1" {
		t.Fatalf("another node's claim after an unknown answer: %v %v %+v", err, l2, held)
	}
}
