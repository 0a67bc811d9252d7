package reporter

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/internal/syncbuf"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
)

// The reporter under failure. Each test runs the real loop against a real
// peer (or a store whose writes fail as on a full disk) for a while and
// then checks three things: no entry is left stuck (every one reaches its
// right state once the failure ends, or waits with a future due time), the
// log has a bounded number of lines, and the work done is bounded (loop
// passes, claims, peer calls), counted rather than timed.

// faultyStore is a real store whose writes fail with ENOSPC on demand,
// while reads keep working: what a full disk does to bbolt.
type faultyStore struct {
	*store.Store
	failAll        atomic.Bool  // every write
	failAfterClaim atomic.Bool  // every write but Claim
	failOutcomes   atomic.Int32 // the next n RecordTransaction calls
	failed         atomic.Int64
}

var errDiskFull = fmt.Errorf("committing: write xarfd.db: %w", syscall.ENOSPC)

func (f *faultyStore) fault(claim bool) error {
	if f.failAll.Load() || (!claim && f.failAfterClaim.Load()) {
		f.failed.Add(1)
		return errDiskFull
	}
	return nil
}

func (f *faultyStore) Claim(id store.ID, now time.Time, lease time.Duration) (*store.OutboxEntry, error) {
	if err := f.fault(true); err != nil {
		return nil, err
	}
	return f.Store.Claim(id, now, lease)
}

func (f *faultyStore) ClaimBatch(ids []store.ID, now time.Time, lease time.Duration) ([]store.StepResult, error) {
	if err := f.fault(true); err != nil {
		return nil, err
	}
	return f.Store.ClaimBatch(ids, now, lease)
}

func (f *faultyStore) Settle(chains [][]store.Step) ([][]store.StepResult, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.Settle(chains)
}

func (f *faultyStore) Release(id store.ID, now time.Time) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.Release(id, now)
}

func (f *faultyStore) Withhold(id store.ID, now time.Time, reason string, src netip.Addr) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.Withhold(id, now, reason, src)
}

func (f *faultyStore) Dedup(id store.ID, now time.Time, src netip.Addr, fp string, window time.Duration) (store.ID, bool, error) {
	if err := f.fault(false); err != nil {
		return store.ID{}, false, err
	}
	return f.Store.Dedup(id, now, src, fp, window)
}

func (f *faultyStore) SetContact(id store.ID, now time.Time, rcpts []string, source string, dropped []string) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.SetContact(id, now, rcpts, source, dropped)
}

func (f *faultyStore) DryRun(id store.ID, now time.Time, m *store.RenderedMail, reason string) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.DryRun(id, now, m, reason)
}

func (f *faultyStore) BeginDelivery(id store.ID, now time.Time, lease time.Duration, perHour int, m *store.RenderedMail) (*store.OutboxEntry, *store.RateLimit, error) {
	if err := f.fault(false); err != nil {
		return nil, nil, err
	}
	return f.Store.BeginDelivery(id, now, lease, perHour, m)
}

func (f *faultyStore) MarkTransmitted(id store.ID, now time.Time) error {
	if err := f.fault(false); err != nil {
		return err
	}
	return f.Store.MarkTransmitted(id, now)
}

func (f *faultyStore) RecordTransaction(id store.ID, now time.Time, t store.Transaction) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	if f.failOutcomes.Add(-1) >= 0 {
		f.failed.Add(1)
		return nil, errDiskFull
	}
	return f.Store.RecordTransaction(id, now, t)
}

func (f *faultyStore) MarkSent(id store.ID, now time.Time, lastErr string, forget bool) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.MarkSent(id, now, lastErr, forget)
}

func (f *faultyStore) GiveUp(id store.ID, now time.Time, lastErr, reason string, row *store.Attempt) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.GiveUp(id, now, lastErr, reason, row)
}

func (f *faultyStore) Retry(id store.ID, now, next time.Time, lastErr, reason string, row *store.Attempt) (*store.OutboxEntry, error) {
	if err := f.fault(false); err != nil {
		return nil, err
	}
	return f.Store.Retry(id, now, next, lastErr, reason, row)
}

func (f *faultyStore) PutContact(key string, c *store.CachedContact) error {
	if err := f.fault(false); err != nil {
		return err
	}
	return f.Store.PutContact(key, c)
}

func (f *faultyStore) PruneOutboxMail() (int, error) {
	if err := f.fault(false); err != nil {
		return 0, err
	}
	return f.Store.PruneOutboxMail()
}

// failing replaces e's reporter by one on st that logs into the returned
// buffer, with short pauses so that a test sees several rounds.
func (e *env) failing(t *testing.T, st Store, opt Options) *syncbuf.Buffer {
	t.Helper()
	buf := &syncbuf.Buffer{}
	opt.Logger = zerolog.New(buf)
	opt.Poll = 20 * time.Millisecond
	opt.StoreBackoff = cmp.Or(opt.StoreBackoff, 50*time.Millisecond)
	opt.MaxStoreBackoff = cmp.Or(opt.MaxStoreBackoff, 200*time.Millisecond)
	rep, err := New(e.cfg, st, opt)
	if err != nil {
		t.Fatal(err)
	}
	e.rep = rep
	return buf
}

// runFor runs the reporter for d of wall time: the window in which a
// spinning loop would do thousands of rounds.
func (e *env) runFor(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	e.rep.Run(ctx)
}

func lines(buf *syncbuf.Buffer) int { return strings.Count(buf.String(), "\n") }

// bounded fails t when a count exceeds its bound, naming it.
func bounded(t *testing.T, what string, got, limit int64) {
	t.Helper()
	if got > limit {
		t.Errorf("%s: %d, want at most %d", what, got, limit)
	}
}

func (e *env) statuses(t *testing.T, ids []store.ID) map[store.OutboxStatus]int {
	t.Helper()
	out := map[store.OutboxStatus]int{}
	for _, id := range ids {
		out[e.status(t, id)]++
	}
	return out
}

// A store that refuses every write (full disk), in dry run: the claims
// fail, the reporter pauses with a growing backoff and logs the error
// once; when the disk has room again every entry is rendered.
func TestStoreFullPausesAndRecovers(t *testing.T) {
	e := setup(t, trapChannel+smarthostYAML("127.0.0.1:1", false, ""), Options{})
	var ids []store.ID
	for i := range 3 {
		ids = append(ids, e.trapHit(t, "trap", "v@trap.reporter.test", originIP, fmt.Sprint("spam ", i)))
	}
	fs := &faultyStore{Store: e.st}
	fs.failAll.Store(true)
	logs := e.failing(t, fs, Options{})
	e.runFor(1500 * time.Millisecond)

	t.Logf("full disk for 1.5 s: %d loop passes, %d claims, %d failed writes, %d log lines", e.rep.iterations.Load(), e.rep.claims.Load(), fs.failed.Load(), lines(logs))
	bounded(t, "loop passes", e.rep.iterations.Load(), 100)
	// 3 entries per round, pauses of 50, 100, then 200 ms (±20 %).
	bounded(t, "claims", e.rep.claims.Load(), 60)
	bounded(t, "log lines", int64(lines(logs)), 3)
	if fs.failed.Load() == 0 {
		t.Fatal("the store was never written to")
	}
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("the store error is not logged: %s", logs)
	}
	if got := e.statuses(t, ids); got[store.OutboxPending] != 3 {
		t.Fatalf("while the disk is full: %v", got)
	}

	fs.failAll.Store(false)
	e.run(t, func() bool { return e.statuses(t, ids)[store.OutboxDryRun] == 3 })
}

// The claim commits, then every later write fails: each entry waits for
// its lease instead of coming due at once, and is taken again after it.
func TestStoreFailsAfterClaimWaitsForLease(t *testing.T) {
	e := setup(t, trapChannel+smarthostYAML("127.0.0.1:1", false, ""), Options{})
	var ids []store.ID
	for i := range 3 {
		ids = append(ids, e.trapHit(t, "trap", "v@trap.reporter.test", originIP, fmt.Sprint("spam ", i)))
	}
	fs := &faultyStore{Store: e.st}
	fs.failAfterClaim.Store(true)
	logs := e.failing(t, fs, Options{Lease: 300 * time.Millisecond})
	start := time.Now()
	e.runFor(1500 * time.Millisecond)

	t.Logf("writes after the claim failing for 1.5 s: %d loop passes, %d claims, %d log lines", e.rep.iterations.Load(), e.rep.claims.Load(), lines(logs))
	bounded(t, "loop passes", e.rep.iterations.Load(), 150)
	// One claim per entry per lease, and the 1.5 s hold 5 leases.
	bounded(t, "claims", e.rep.claims.Load(), 3*6)
	bounded(t, "log lines", int64(lines(logs)), 3)
	for _, id := range ids {
		x := e.entry(t, id)
		if x.Status != store.OutboxSending || !x.LeaseUntil.After(start) {
			t.Fatalf("entry without a lease: %+v", x)
		}
	}

	fs.failAfterClaim.Store(false)
	e.run(t, func() bool { return e.statuses(t, ids)[store.OutboxDryRun] == 3 })
}

// servfail is a DNS server on 127.0.0.1 that answers SERVFAIL to every
// query, and counts them.
func servfail(t *testing.T, queries *atomic.Int64) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// The abuse-contact zone's server fails: entries are deferred with a
// growing backoff, the error is logged once, nothing is left sending.
func TestDNSFailureBacksOff(t *testing.T) {
	var queries atomic.Int64
	server := servfail(t, &queries)
	d := startDesk(t, nil)
	// Continues the base's contacts mapping.
	e := setup(t, "  dns_zones: [abuse-contacts.test]\n"+fmt.Sprintf("resolver: %q\n", server)+trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	var ids []store.ID
	for i := range 3 {
		ids = append(ids, e.trapHit(t, "trap", "v@trap.reporter.test", fmt.Sprint("192.88.98.", i+1), "spam"))
	}
	logs := e.failing(t, e.st, Options{})
	e.runFor(1500 * time.Millisecond)

	t.Logf("SERVFAIL for 1.5 s: %d loop passes, %d claims, %d DNS queries, %d log lines", e.rep.iterations.Load(), e.rep.claims.Load(), queries.Load(), lines(logs))
	// backoff 50 ms · 2^n ±20 %: at most 6 tries each in 1.5 s.
	bounded(t, "claims", e.rep.claims.Load(), 3*7)
	bounded(t, "loop passes", e.rep.iterations.Load(), 150)
	bounded(t, "log lines", int64(lines(logs)), 3)
	if queries.Load() == 0 {
		t.Fatal("the zone was never asked")
	}
	for _, id := range ids {
		x := e.entry(t, id)
		if x.Status != store.OutboxPending || x.Retries < 2 || !strings.Contains(x.LastError, "contact lookup") || x.Attempts != 0 {
			t.Fatalf("entry %+v", x)
		}
	}
	if !strings.Contains(logs.String(), `"repeated"`) || strings.Count(logs.String(), "report deferred") != 1 {
		t.Errorf("deferrals not logged once: %s", logs)
	}
	if n := len(d.messages()); n != 0 {
		t.Fatalf("desk got %d", n)
	}
}

// A smarthost that answers 451 to everything: deliveries back off, the
// error is logged once per kind, and every entry is given up after
// give_up_after.
func TestSMTP4xxBacksOffThenGivesUp(t *testing.T) {
	d := startDesk(t, func(int) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	})
	e := setup(t, trapChannel+strings.Replace(smarthostYAML(d.addr, true, ""), "give_up_after: 1h", "give_up_after: 1200ms", 1), Options{})
	var ids []store.ID
	for i := range 3 {
		ids = append(ids, e.trapHit(t, "trap", "v@trap.reporter.test", originIP, fmt.Sprint("spam ", i)))
	}
	logs := e.failing(t, e.st, Options{})
	e.run(t, func() bool { return e.statuses(t, ids)[store.OutboxFailed] == 3 })

	d.mu.Lock()
	calls := d.calls
	d.mu.Unlock()
	t.Logf("451 until give-up: %d loop passes, %d claims, %d desk calls, %d log lines", e.rep.iterations.Load(), e.rep.claims.Load(), calls, lines(logs))
	bounded(t, "desk calls", int64(calls), 3*7)
	bounded(t, "claims", e.rep.claims.Load(), 3*8)
	// One "deferred" line, one "given up" line.
	bounded(t, "log lines", int64(lines(logs)), 3)
	for _, id := range ids {
		x := e.entry(t, id)
		if !strings.Contains(x.Reason, "gave up") || !strings.Contains(x.LastError, "451") || x.Attempts < 2 {
			t.Fatalf("entry %+v", x)
		}
	}
}

// A smarthost that answers 550: one attempt each, failed, logged once.
func TestSMTP5xxFailsOnce(t *testing.T) {
	d := startDesk(t, func(int) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "go away"}
	})
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	var ids []store.ID
	for i := range 5 {
		ids = append(ids, e.trapHit(t, "trap", "v@trap.reporter.test", originIP, fmt.Sprint("spam ", i)))
	}
	logs := e.failing(t, e.st, Options{})
	e.run(t, func() bool { return e.statuses(t, ids)[store.OutboxFailed] == 5 })
	e.runFor(300 * time.Millisecond) // a retry would come within this

	d.mu.Lock()
	calls := d.calls
	d.mu.Unlock()
	t.Logf("550: %d claims, %d desk calls, %d log lines", e.rep.claims.Load(), calls, lines(logs))
	if calls != 5 {
		t.Errorf("desk calls %d, want 5", calls)
	}
	bounded(t, "claims", e.rep.claims.Load(), 5)
	bounded(t, "log lines", int64(lines(logs)), 2)
	for _, id := range ids {
		if x := e.entry(t, id); x.Attempts != 1 || !strings.Contains(x.LastError, "550") {
			t.Fatalf("entry %+v", x)
		}
	}
}

// The process dies between the claim and the send: the store is reopened
// and the entry is taken again at once (the file lock proves its holder
// gone), and delivered once.
func TestCrashBetweenClaimAndSend(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "spam")
	if _, err := e.st.Claim(id, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	dir := e.st.Path()[:strings.LastIndexByte(e.st.Path(), '/')]
	e.st.Close()
	e.st = storetest.Open(t, dir)
	logs := e.failing(t, e.st, Options{})
	e.run(t, func() bool { return e.status(t, id) == store.OutboxSent })
	x := e.entry(t, id)
	if x.Resent != 0 || x.Attempts != 1 || len(d.messages()) != 1 {
		t.Fatalf("entry %+v, desk got %d", x, len(d.messages()))
	}
	bounded(t, "log lines", int64(lines(logs)), 3)
}

// The desk accepts, then the store refuses to record it: the entry stays
// sending until its lease runs out, is taken again, resent with the same
// Message-ID (the documented at-least-once window) and recorded sent.
func TestOutcomeNotRecordedIsRetakenAfterLease(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "spam")
	fs := &faultyStore{Store: e.st}
	fs.failOutcomes.Store(1)
	logs := e.failing(t, fs, Options{Lease: 300 * time.Millisecond})
	e.run(t, func() bool { return e.status(t, id) == store.OutboxSent })
	x := e.entry(t, id)
	got := d.messages()
	if x.Resent != 1 || len(got) != 2 || e.rep.claims.Load() != 2 {
		t.Fatalf("entry %+v; desk got %d, %d claims", x, len(got), e.rep.claims.Load())
	}
	mid := func(b []byte) string {
		s := string(b)
		i := strings.Index(s, "Message-ID:")
		return s[i : i+strings.Index(s[i:], "\r\n")]
	}
	if mid(got[0].Data) != mid(got[1].Data) {
		t.Fatalf("resent with another Message-ID: %q, %q", mid(got[0].Data), mid(got[1].Data))
	}
	bounded(t, "log lines", int64(lines(logs)), 3)
}

// A contact zone that names 80 addresses: the report goes to the first
// reporter.max_recipients_per_report of them, once; the rest are recorded
// on the entry and logged by count and domain only.
func TestRecipientFanOutIsCapped(t *testing.T) {
	var addrs, txt []string
	for i := range 80 {
		addrs = append(addrs, fmt.Sprintf("a%d@d%d.test", i, i%3))
		if i%20 == 19 { // TXT strings hold 255 bytes, the UDP answer 1232
			txt = append(txt, strings.Join(addrs[i-19:], ","))
		}
	}
	var queries atomic.Int32
	server := zoneServer(t, map[string][]string{"5.98.88.192.abuse-contacts.test.": txt}, &queries)
	d := startDesk(t, nil)
	e := setup(t, "  dns_zones: [abuse-contacts.test]\n"+fmt.Sprintf("resolver: %q\n", server)+trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "trap", "v@trap.reporter.test", "192.88.98.5", "spam")
	logs := e.failing(t, e.st, Options{})
	e.run(t, func() bool { return e.status(t, id) == store.OutboxSent })
	got := d.messages()
	if len(got) != 1 || len(got[0].To) != 5 || got[0].To[0] != addrs[0] || got[0].To[4] != addrs[4] {
		t.Fatalf("desk got %d messages, first to %v", len(got), got[0].To)
	}
	x := e.entry(t, id)
	if len(x.Recipients) != 5 || len(x.Dropped) != 75 || x.Dropped[0] != addrs[5] {
		t.Fatalf("entry recipients %d, dropped %d", len(x.Recipients), len(x.Dropped))
	}
	l := logs.String()
	if !strings.Contains(l, `"dropped":75`) || !strings.Contains(l, "d2.test") {
		t.Fatalf("the drop is not logged with count and domains: %s", l)
	}
	if strings.Contains(l, "a79@") {
		t.Fatalf("a dropped address is logged: %s", l)
	}
}
