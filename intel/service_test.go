package intel

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

const serviceConfig = `
hostname: mx1.abuse-desk.net
sender: {org: Desk, contact: abuse@abuse-desk.net, domain: abuse-desk.net}
channels:
  - name: trap
    kind: trap
    addresses: ["*@honey.catchall-mail.com"]
    redact: {recipients: true}
    uses: [store, intel]
  - name: quiet
    kind: trap
    addresses: ["*@quiet.catchall-mail.com"]
    uses: [store]
intel:
  ip_zone: bl.abuse-desk.net
  domain_zone: dbl.abuse-desk.net
  expire_after: 24h
`

const trapMail = "From: Deals <offers@spam-domain.biz>\r\nTo: victim@honey.catchall-mail.com\r\nSubject: win\r\n\r\n" +
	"Click https://click.spam-domain.biz/x?u=victim@honey.catchall-mail.com now, victim@honey.catchall-mail.com\r\n"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type rig struct {
	cfg    *config.Config
	st     *store.Store
	in     *ingest.Ingester
	clk    *clock
	mu     sync.Mutex
	events []Event
}

func newRig(t testing.TB) *rig {
	t.Helper()
	cfg, err := config.Parse([]byte(serviceConfig), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{cfg: cfg, st: st, in: in, clk: &clock{t: time.Now()}}
}

func (r *rig) service(t testing.TB) *Service {
	t.Helper()
	s, err := New(r.cfg, r.st, Options{Now: r.clk.now, OnEvent: func(e Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (r *rig) deliver(t *testing.T, channel, rcpt, peer string) {
	t.Helper()
	env := store.Envelope{PeerIP: netip.MustParseAddr(peer), PeerPort: 40000, MailFrom: "bounce@spam-domain.biz", Via: "smtp"}
	res, err := r.in.Accept(env, []ingest.Delivery{{Channel: r.cfg.Channel(channel), Rcpts: []string{rcpt}}}, []byte(trapMail))
	if err != nil || len(res) != 1 || res[0].Quarantined {
		t.Fatalf("delivery: %v %+v", err, res)
	}
}

func (r *rig) eventTypes() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, e := range r.events {
		s = append(s, e.Type+":"+string(e.Kind)+":"+e.Value)
	}
	return strings.Join(s, " ")
}

func mine(t *testing.T, s *Service) int {
	t.Helper()
	n, err := s.Mine()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestTrapHitListsAndExpires(t *testing.T) {
	r := newRig(t)
	s := r.service(t)
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "45.142.120.11")
	r.deliver(t, "quiet", "x@quiet.catchall-mail.com", "45.142.120.99") // no intel use
	if n := mine(t, s); n != 1 {
		t.Fatalf("mined %d reports, want 1 (the quiet channel does not use intel)", n)
	}
	if n := mine(t, s); n != 0 {
		t.Fatalf("mined %d reports again", n)
	}
	for _, c := range []struct {
		k Kind
		v string
	}{{KindIP, "45.142.120.11"}, {KindDomain, "spam-domain.biz"}, {KindURL, "https://click.spam-domain.biz/x"}} {
		l, ok := s.Lookup(c.k, c.v)
		if !ok || !strings.Contains(l.Reason, "1 spamtrap") {
			t.Errorf("%s %s: listed=%v %q", c.k, c.v, ok, l.Reason)
		}
	}
	if _, ok := s.Lookup(KindIP, "45.142.120.99"); ok {
		t.Error("a channel without intel was mined")
	}
	if got := r.eventTypes(); !strings.Contains(got, "listed:ip:45.142.120.11") || !strings.Contains(got, "listed:domain:spam-domain.biz") {
		t.Errorf("events %q", got)
	}
	// Nothing stored names the trap.
	r.st.IntelForEach("", "", func(ind *store.IntelIndicator) error {
		if strings.Contains(ind.Value, "catchall-mail") || strings.Contains(ind.Value, "victim") || strings.Contains(ind.Value, "redacted") {
			t.Errorf("stored indicator %s %q names the trap", ind.Kind, ind.Value)
		}
		return nil
	})

	// A restart (a crash) rebuilds the same listing and mines nothing twice.
	s2 := r.service(t)
	if _, ok := s2.Lookup(KindIP, "45.142.120.11"); !ok {
		t.Error("not listed after a restart")
	}
	if n := mine(t, s2); n != 0 {
		t.Errorf("a restarted worker mined %d reports again", n)
	}
	ind, st, err := s2.Get(KindIP, "45.142.120.11")
	if err != nil || ind.Total != 1 || !st.Listed || !strings.HasPrefix(st.Why, "listed since") {
		t.Fatalf("get: %v %+v %+v", err, ind, st)
	}

	r.clk.add(24*time.Hour + time.Second)
	if _, ok := s.Lookup(KindIP, "45.142.120.11"); ok {
		t.Error("still listed 24h after the last hit")
	}
	s.Expire()
	if got := r.eventTypes(); !strings.Contains(got, "expired:ip:45.142.120.11") {
		t.Errorf("no expiry event: %q", got)
	}
	if _, st, _ := s.Get(KindIP, "45.142.120.11"); st.Listed || !strings.Contains(st.Why, "expired") {
		t.Errorf("status after expiry %+v", st)
	}
}

func TestDelistKeepsReason(t *testing.T) {
	r := newRig(t)
	s := r.service(t)
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "45.142.120.11")
	mine(t, s)
	r.clk.set(time.Now())
	if _, err := s.Delist(KindIP, "45.142.120.11", "customer cleaned the host", "ops"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup(KindIP, "45.142.120.11"); ok {
		t.Fatal("listed after delisting")
	}
	if _, err := s.Delist(KindIP, "192.0.2.1", "x", ""); err != store.ErrNotFound {
		t.Errorf("delisting an unknown indicator: %v", err)
	}
	// After a restart too, with the reason kept.
	s2 := r.service(t)
	ind, st, err := s2.Get(KindIP, "45.142.120.11")
	if err != nil || st.Listed || ind.Delisted == nil || ind.Delisted.Reason != "customer cleaned the host" || !strings.Contains(st.Why, "customer cleaned the host") {
		t.Fatalf("after restart: %v %+v %+v", err, ind, st)
	}
	if !strings.Contains(r.eventTypes(), "delisted:ip:45.142.120.11") {
		t.Errorf("events %q", r.eventTypes())
	}
	// A new hit lists it again.
	r.clk.add(time.Second)
	time.Sleep(2 * time.Millisecond) // the new report's id must be later than the delisting
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "45.142.120.11")
	mine(t, s2)
	if _, ok := s2.Lookup(KindIP, "45.142.120.11"); !ok {
		t.Error("a hit after delisting did not list again")
	}
}

func TestPolicy(t *testing.T) {
	p := Policy{Window: 7 * 24 * time.Hour, Expire: 24 * time.Hour, Spamtrap: 1, Complaint: 3}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	hit := func(h time.Duration, src string) store.IntelHit {
		return store.IntelHit{Time: t0.Add(h), Source: src}
	}
	cases := []struct {
		name   string
		hits   []store.IntelHit
		at     time.Duration
		listed bool
	}{
		{"one trap hit", []store.IntelHit{hit(0, "spamtrap")}, time.Hour, true},
		{"trap hit expired", []store.IntelHit{hit(0, "spamtrap")}, 24 * time.Hour, false},
		{"two complaints", []store.IntelHit{hit(0, "user_complaint"), hit(time.Hour, "user_complaint")}, 2 * time.Hour, false},
		{"three complaints", []store.IntelHit{hit(0, "user_complaint"), hit(time.Hour, "user_complaint"), hit(2*time.Hour, "user_complaint")}, 3 * time.Hour, true},
		{"three complaints outside the window", []store.IntelHit{hit(0, "user_complaint"), hit(100*time.Hour, "user_complaint"), hit(200*time.Hour, "user_complaint")}, 201 * time.Hour, false},
		{"unknown source counts as complaint", []store.IntelHit{hit(0, "automatic"), hit(1, "automatic")}, time.Hour, false},
		{"a hit while listed extends", []store.IntelHit{hit(0, "spamtrap"), hit(20*time.Hour, "user_complaint")}, 40 * time.Hour, true},
	}
	for _, c := range cases {
		st := p.Evaluate(&store.IntelIndicator{Hits: c.hits}, t0.Add(c.at))
		if st.Listed != c.listed || st.Why == "" {
			t.Errorf("%s: listed=%v (%s), want %v", c.name, st.Listed, st.Why, c.listed)
		}
	}
}

// TestLateCommit: a report whose id is older than the cursor (its
// session took longer than a newer one's) is mined by the look-behind
// pass, once.
func TestLateCommit(t *testing.T) {
	r := newRig(t)
	s := r.service(t)
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "45.142.120.11")
	mine(t, s)
	old, _ := store.NewID()
	ms := uint64(time.Now().Add(-time.Minute).UnixMilli())
	for i := 0; i < 6; i++ {
		old[i] = byte(ms >> (40 - 8*i))
	}
	rep := &store.Report{ID: old, Channel: "trap", Via: "smtp", SourceIP: netip.MustParseAddr("45.142.120.12"),
		XARF: []byte(`{"evidence_source":"spamtrap","source_identifier":"45.142.120.12"}`)}
	if err := r.st.Put([]store.Entry{{Report: rep}}); err != nil {
		t.Fatal(err)
	}
	if n := mine(t, s); n != 0 {
		t.Fatalf("the pass after the cursor took %d reports older than it", n)
	}
	if n, err := s.MineLate(); err != nil || n != 1 {
		t.Fatalf("look-behind pass: %d %v", n, err)
	}
	if _, ok := s.Lookup(KindIP, "45.142.120.12"); !ok {
		t.Error("late report not listed")
	}
	if n, _ := s.MineLate(); n != 0 {
		t.Errorf("late report mined twice (%d)", n)
	}
}

// TestReloadExclusions: a trap domain added to a channel by a reload is
// never extracted from the next report on (here from a sender address
// that a spammer forged at the trap's domain), and a channel that starts
// to use intel at the reload is mined.
func TestReloadExclusions(t *testing.T) {
	r := newRig(t)
	s := r.service(t)
	y := strings.Replace(serviceConfig, `addresses: ["*@honey.catchall-mail.com"]`,
		`addresses: ["*@honey.catchall-mail.com", "*@decoy-trapnet.org"]`, 1)
	y = strings.Replace(y, "    uses: [store]\n", "    uses: [store, intel]\n", 1)
	next, err := config.Parse([]byte(y), "next.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(next, r.st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Reload(next)
	for _, d := range []struct{ ch, rcpt, from, peer string }{
		{"trap", "spamtrap7@decoy-trapnet.org", "sales@decoy-trapnet.org", "45.142.120.12"},
		{"quiet", "x@quiet.catchall-mail.com", "bounce@spam-domain.biz", "45.142.120.99"},
	} {
		env := store.Envelope{PeerIP: netip.MustParseAddr(d.peer), PeerPort: 40000, MailFrom: d.from, Via: "smtp"}
		res, err := in.Accept(env, []ingest.Delivery{{Channel: next.Channel(d.ch), Rcpts: []string{d.rcpt}}}, []byte(trapMail))
		if err != nil || len(res) != 1 || res[0].Quarantined {
			t.Fatalf("delivery: %v %+v", err, res)
		}
	}
	if n := mine(t, s); n != 2 {
		t.Errorf("mined %d reports, want 2 (quiet uses intel after the reload)", n)
	}
	found := 0
	r.st.IntelForEach("", "", func(ind *store.IntelIndicator) error {
		found++
		if strings.Contains(ind.Value, "decoy-trapnet") {
			t.Errorf("stored indicator %s %q names the trap domain added by the reload", ind.Kind, ind.Value)
		}
		return nil
	})
	if _, ok := s.Lookup(KindIP, "45.142.120.99"); found == 0 || !ok {
		t.Errorf("%d indicators; the channel that uses intel since the reload is not listed", found)
	}
}
