// Package reporter tells the network a report's abuse came from: it works
// through the store's outbox in its own goroutines, so that contact
// lookups and slow abuse desks never hold up ingest.
//
// For each pending entry, in order:
//
//  1. policy: the channel still exists and its uses include report; the
//     source is a public address (arf.IsPublic) outside own_networks.
//     Otherwise the entry is withheld, with the reason; the report stays
//     stored and visible.
//  2. de-duplication: the same source and evidence fingerprint within
//     the window is one report; later ones become duplicates and raise
//     the first one's count.
//  3. contact: the channel's partners, or the origin's abuse contact
//     (static table, DNS zones, RDAP; cached). None found: withheld.
//  4. dry run (reporter.enabled false): the message is rendered and kept,
//     the entry is dry-run, nothing is sent.
//  5. rate limit: at most per_contact_per_hour deliveries per contact;
//     excess waits pending until a slot frees. Never dropped.
//  6. delivery: render and DKIM-sign once, store the message and count
//     the attempt in one durable commit; then deliver. Just before the
//     final "." of DATA the entry is durably marked transmitted.
//  7. outcome: 250 sent (a channel whose uses lack store then loses the
//     report and its evidence); 5xx failed; 4xx or no answer: pending
//     again after an exponential backoff with jitter, until give_up_after.
//
// Before step 1 the entry is claimed (store.ClaimBatch, one commit for all
// the entries due): sending, with a lease committed before any work. Every
// step after it ends in a transition of the store's state machine; steps
// 1 to 4, which need no network, are recorded for a batch of entries in
// one commit each (store.Settle: policy and de-duplication, then contacts
// and dry runs), lookups and deliveries per entry; if that transition cannot be recorded (the
// store refuses writes), the entry waits for its lease to run out instead
// of coming due at once, and the whole reporter pauses with a growing
// backoff. Repeated identical errors are logged once a minute with a
// count. No failure makes the loop spin.
//
// At start, entries left sending by a stop are made pending again and
// resent with the same bytes and Message-ID. If the stop came after the
// transmitted mark (between the desk's 250 and our commit), the desk may
// get the report twice; Resent counts these, and the identical
// Message-ID lets the desk discard the copy. See docs/reporting.md.
//
// In a cluster (Options.Claims) every node holds every entry; before
// step 5 an entry is claimed cluster-wide under its fingerprint, so that
// one node sends it and the others settle it as sent elsewhere (see
// Claims and docs/reporting.md), and step 5 counts on the cluster's
// shared rate counters.
//
// The work beside the state machine lives in subpackages: contact finds
// the abuse desk (step 3), render writes the message (steps 4 and 6),
// deliver signs it and speaks SMTP (step 6).
package reporter

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/config"
	msgheader "github.com/xarfd/xarfd/internal/header"
	"github.com/xarfd/xarfd/internal/lograte"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/reporter/contact"
	"github.com/xarfd/xarfd/reporter/deliver"
	"github.com/xarfd/xarfd/reporter/render"
	"github.com/xarfd/xarfd/store"
)

// Delivery results counted by metrics.Delivery (a fixed set).
const (
	resultSent        = "sent"
	resultDeferred    = "deferred"
	resultFailed      = "failed"
	resultDryRun      = "dry-run"
	resultWithheld    = "withheld"
	resultDuplicate   = "duplicate"
	resultRateLimited = "rate-limited"
	// resultSentElsewhere: another node of the cluster sent it.
	resultSentElsewhere = "sent-elsewhere"
)

// defaultDedupWindow is how long the same source and evidence count as
// one incident.
const defaultDedupWindow = 24 * time.Hour

// DefaultDedupWindow and DefaultLease are the reporter's, for a
// cluster's claims (whose records must outlive both).
const (
	DefaultDedupWindow = defaultDedupWindow
	DefaultLease       = defaultLease
)

// defaultLease is how long a claim holds an entry: longer than one
// delivery may take (30 s to connect, 2 min per command, 10 min after the
// final dot), so that a delivery still running is never taken twice.
const defaultLease = 15 * time.Minute

// Pauses after the store refused an operation: doubling per consecutive
// failure, from the first to the cap, with jitter.
const (
	defaultStoreBackoff    = time.Second
	defaultMaxStoreBackoff = 5 * time.Minute
)

// defaultGather is how long the loop lets reports accumulate after a
// Wake: each pass makes two or three durable commits (the claim, the
// de-duplication, the contacts and dry runs) for however many entries it
// takes, so a pass per stored report would double the commits of the
// report path. Nobody waits for a report to an abuse desk by the
// millisecond.
const defaultGather = 100 * time.Millisecond

// defaultLogEvery is the interval at which a repeated identical error is
// logged again, with how often it recurred meanwhile.
const defaultLogEvery = lograte.Every

// Options are the optional parts of a Reporter.
type Options struct {
	Metrics *metrics.Metrics
	Logger  zerolog.Logger
	// Workers deliver in parallel (default 4).
	Workers int
	// DedupWindow defaults to defaultDedupWindow.
	DedupWindow time.Duration
	// MXPort is the port MX hosts are reached on. Default 25; only tests
	// change it (serve reads XARFD_TEST_MX_PORT).
	MXPort int
	// TLSConfig is the base of outbound TLS (tests add RootCAs).
	TLSConfig *tls.Config
	// HTTPClient is used for RDAP (default: 15 s timeout).
	HTTPClient *http.Client
	// UserAgent goes into the feedback part (default "xarfd").
	UserAgent string
	// Poll is the longest the loop sleeps without a Wake (default 2 s).
	Poll time.Duration
	// Gather is how long the loop waits after a Wake before it looks for
	// due entries (default defaultGather), so that reports stored
	// together are claimed and settled together.
	Gather time.Duration
	// Lease, StoreBackoff, MaxStoreBackoff and LogEvery default to the
	// constants above (tests shorten them).
	Lease, StoreBackoff, MaxStoreBackoff, LogEvery time.Duration
	// Now is the clock of the outbox (tests). Pauses after store errors
	// and log intervals use the real clock: they pace the process.
	Now func() time.Time
	// Claims makes each report sent once across a cluster's nodes (see
	// Claims); nil on a single node.
	Claims Claims
	// AfterClaim, when set, is called after a cluster claim was won and
	// before anything is sent: tests stop a node there.
	AfterClaim func(id store.ID)
}

// settings are the parts of the configuration read afresh for every
// entry, so that Reload can swap them while the reporter runs.
type settings struct {
	enabled                              bool
	from, replyTo, hostname, org, format string
	perHour, maxRecipients               int
	retryFirst, giveUpAfter              time.Duration
	own                                  []config.Prefix
	channels                             map[string]*config.Channel
	// Built from the files the configuration names; a reload reads them
	// again (a rotated DKIM key or smarthost password needs no restart).
	contacts *contact.Resolver
	signer   *deliver.Signer
	deliver  deliver.Sender
}

// newSettings builds the settings of cfg, reading the DKIM key and the
// smarthost password.
func (r *Reporter) newSettings(cfg *config.Config) (*settings, error) {
	signer, err := deliver.NewSigner(&cfg.Reporter.DKIM)
	if err != nil {
		return nil, err
	}
	sh := cfg.Reporter.Smarthost
	var password string
	if sh.PasswordFile != "" {
		b, err := os.ReadFile(sh.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("reporter.smarthost.password_file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	var rdap *contact.RDAP
	if cfg.Contacts.RDAP.Enabled {
		rdap = contact.NewRDAP(cfg.Contacts.RDAP.BaseURL, r.opt.HTTPClient)
	}
	s := &settings{
		signer:   signer,
		contacts: contact.New(&cfg.Contacts, cfg.Resolver, r.st, rdap, r.opt.Now),
		deliver: &deliver.SMTP{Smarthost: sh.Address, TLS: sh.TLS, Username: sh.Username, Password: password,
			HeloName: cfg.Hostname, Resolver: contact.NewDNSResolver(cfg.Resolver), MXPort: r.opt.MXPort, TLSConfig: r.opt.TLSConfig},
		enabled: cfg.Reporter.Enabled, from: cmp.Or(cfg.Reporter.From, cfg.Sender.Contact), replyTo: cfg.Sender.Contact,
		hostname: cfg.Hostname, org: cfg.Sender.Org, format: cfg.Reporter.Format,
		perHour: cfg.Reporter.PerContactPerHour, maxRecipients: cfg.Reporter.MaxRecipientsPerReport,
		retryFirst: cfg.Reporter.Retry.First.D(), giveUpAfter: cfg.Reporter.Retry.GiveUpAfter.D(),
		own: cfg.OwnNetworks, channels: map[string]*config.Channel{},
	}
	for i := range cfg.Channels {
		s.channels[cfg.Channels[i].Name] = &cfg.Channels[i]
	}
	return s, nil
}

// Reporter works through the outbox. Create it with New, run it with Run.
type Reporter struct {
	st    Store
	opt   Options
	log   zerolog.Logger
	conf  atomic.Pointer[settings]
	wake  chan struct{}
	limit *lograte.Limiter

	mu         sync.Mutex
	inflight   map[store.ID]bool
	storeFails int       // consecutive store failures
	storeUntil time.Time // no work before this (real clock)

	// iterations counts passes of Run's loop and claims the entries it
	// tried to take: tests bound a failing reporter's work by them.
	iterations, claims atomic.Int64

	// ops carries an operator's retry to every node of a cluster; nil
	// on a single node. Set before serving (ops.go).
	ops ops.Replicator
}

// New prepares a Reporter: it reads the DKIM key and the smarthost
// password once.
func New(cfg *config.Config, st Store, opt Options) (*Reporter, error) {
	opt.Workers = cmp.Or(opt.Workers, 4)
	opt.DedupWindow = cmp.Or(opt.DedupWindow, defaultDedupWindow)
	opt.UserAgent = cmp.Or(opt.UserAgent, "xarfd")
	opt.Poll = cmp.Or(opt.Poll, 2*time.Second)
	opt.Gather = cmp.Or(opt.Gather, defaultGather)
	opt.Lease = cmp.Or(opt.Lease, defaultLease)
	opt.StoreBackoff = cmp.Or(opt.StoreBackoff, defaultStoreBackoff)
	opt.MaxStoreBackoff = cmp.Or(opt.MaxStoreBackoff, defaultMaxStoreBackoff)
	opt.LogEvery = cmp.Or(opt.LogEvery, defaultLogEvery)
	if opt.Now == nil {
		opt.Now = time.Now
	}
	r := &Reporter{
		st: st, opt: opt, log: opt.Logger,
		wake:     make(chan struct{}, 1),
		limit:    lograte.New(opt.LogEvery, time.Now),
		inflight: map[store.ID]bool{},
	}
	if err := r.Reload(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload makes cfg's reporter settings, sender, hostname, channels,
// contacts and own_networks apply from the next step of every entry on
// (a SIGHUP reload); it reads the DKIM key and the smarthost password
// again. On error the running settings stay.
func (r *Reporter) Reload(cfg *config.Config) error {
	set, err := r.newSettings(cfg)
	if err != nil {
		return err
	}
	r.conf.Store(set)
	return nil
}

// Wake makes the loop look for due entries now (call it after a report
// was stored). It never blocks.
func (r *Reporter) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run resumes what a stop interrupted, then processes due entries until
// ctx ends, and waits for the deliveries in flight (they are cut short by
// ctx and retried later). A store that refuses operations pauses the loop
// (see storeFailed) instead of ending it: the daemon keeps accepting mail
// while its disk is full, and the reporter carries on when it is not.
func (r *Reporter) Run(ctx context.Context) error {
	// Workers settle batches of claimed entries; deliverers take the
	// entries to send one by one, so that a slow desk holds up one
	// delivery and not the rest of its batch.
	work := make(chan []*store.OutboxEntry)
	sendq := make(chan delivery)
	var wg, sends sync.WaitGroup
	for range r.opt.Workers {
		sends.Go(func() {
			for d := range sendq {
				r.send(ctx, d.conf, d.e)
				r.done([]*store.OutboxEntry{d.e})
				r.Wake()
			}
		})
		wg.Go(func() {
			for batch := range work {
				conf, send := r.processClaimed(ctx, batch)
				r.done(slices.DeleteFunc(batch, func(e *store.OutboxEntry) bool {
					return slices.ContainsFunc(send, func(x *store.OutboxEntry) bool { return x.ID == e.ID })
				}))
				for _, e := range send {
					sendq <- delivery{conf, e}
				}
				r.Wake()
			}
		})
	}
	defer sends.Wait()
	defer close(sendq)
	defer wg.Wait()
	defer close(work)
	resumed := false
	var lastPrune time.Time
	for {
		r.iterations.Add(1)
		if wait := r.storePause(); wait > 0 {
			if alive, _ := r.sleep(ctx, wait, false); !alive {
				return nil
			}
			continue
		}
		// Nothing is dispatched before the entries a stop left sending
		// are released: releasing one claimed by this process would let
		// it be delivered twice at once.
		if !resumed {
			if r.resume() != nil {
				continue
			}
			resumed = true
		}
		if time.Since(lastPrune) > 10*time.Minute {
			lastPrune = time.Now()
			if n, err := r.st.PruneOutboxMail(); err != nil {
				r.storeFailed(fmt.Errorf("pruning rendered reports: %w", err), "pruning rendered reports")
				continue
			} else if n > 0 {
				r.log.Info().Int("deleted", n).Msg("rendered reports of expired entries deleted")
			}
		}
		due, next, err := r.st.DueOutbox(r.opt.Now(), 64)
		if err != nil {
			r.storeFailed(fmt.Errorf("reading the outbox: %w", err), "reading the outbox")
			continue
		}
		ids := make([]store.ID, len(due))
		for i := range due {
			ids[i] = due[i].ID
		}
		// One commit claims them all; the workers share them out. Entries
		// claimed when a stop comes before they are handed out keep
		// their lease, and the next start releases them (resume).
		for _, batch := range split(r.claim(ids), r.opt.Workers) {
			select {
			case work <- batch:
			case <-ctx.Done():
				r.done(batch)
			}
		}
		sleep := r.opt.Poll
		if !next.IsZero() {
			sleep = min(sleep, max(next.Sub(r.opt.Now()), 10*time.Millisecond))
		}
		alive, woken := r.sleep(ctx, sleep, true)
		if alive && woken {
			alive, _ = r.sleep(ctx, r.opt.Gather, false)
		}
		if !alive {
			return nil
		}
	}
}

// delivery is an entry to send with the settings it was evaluated under.
type delivery struct {
	conf *settings
	e    *store.OutboxEntry
}

// split shares es out into at most n batches of nearly equal size.
func split(es []*store.OutboxEntry, n int) [][]*store.OutboxEntry {
	if len(es) == 0 {
		return nil
	}
	size := (len(es) + n - 1) / n
	var out [][]*store.OutboxEntry
	for len(es) > size {
		out = append(out, es[:size:size])
		es = es[size:]
	}
	return append(out, es)
}

// claim takes those of ids that no worker holds, in one commit, and
// returns the entries it claimed; they are in flight until done.
func (r *Reporter) claim(ids []store.ID) []*store.OutboxEntry {
	var take []store.ID
	r.mu.Lock()
	for _, id := range ids {
		if !r.inflight[id] {
			r.inflight[id] = true
			take = append(take, id)
		}
	}
	r.mu.Unlock()
	if len(take) == 0 {
		return nil
	}
	r.claims.Add(int64(len(take)))
	res, err := r.st.ClaimBatch(take, r.opt.Now().UTC(), r.opt.Lease)
	var (
		out    []*store.OutboxEntry
		failed error
	)
	r.mu.Lock()
	for i, id := range take {
		if err == nil && res[i].Err == nil {
			out = append(out, res[i].Entry)
			continue
		}
		delete(r.inflight, id)
		// An entry that moved on meanwhile is no one's concern; one that
		// cannot be read is the store's.
		if err == nil && failed == nil && !errors.Is(res[i].Err, store.ErrIllegalTransition) && !errors.Is(res[i].Err, store.ErrNotFound) {
			failed = fmt.Errorf("claiming outbox entry %s: %w", id, res[i].Err)
		}
	}
	r.mu.Unlock()
	if err != nil {
		failed = fmt.Errorf("claiming %d outbox entries: %w", len(take), err)
	}
	if failed != nil {
		r.storeFailed(failed, "claiming outbox entries")
	} else if len(out) > 0 {
		r.storeOK()
	}
	return out
}

// done ends the entries' time in flight.
func (r *Reporter) done(es []*store.OutboxEntry) {
	r.mu.Lock()
	for _, e := range es {
		delete(r.inflight, e.ID)
	}
	r.mu.Unlock()
}

// sleep waits for d, or less when woken and wakeable; alive is false
// when ctx ended, woken true when a Wake cut the wait short.
func (r *Reporter) sleep(ctx context.Context, d time.Duration, wakeable bool) (alive, woken bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	var wake <-chan struct{}
	if wakeable {
		wake = r.wake
	}
	select {
	case <-ctx.Done():
		return false, false
	case <-wake:
		return true, true
	case <-t.C:
	}
	return true, false
}

// storeFailed pauses all work after the store refused an operation:
// a full disk or an I/O error fails every entry alike, and trying the
// next one at once is what made the reporter spin. The pause doubles with
// each consecutive failure (defaultStoreBackoff up to
// defaultMaxStoreBackoff, ±20 %); failures during a pause do not add to
// it; a successful claim ends the series.
func (r *Reporter) storeFailed(err error, what string) {
	r.mu.Lock()
	// The workers of one round fail together: they count as one failure,
	// or a batch of 64 would jump to the longest pause at once.
	now := time.Now()
	d := time.Until(r.storeUntil)
	if !now.Before(r.storeUntil) {
		r.storeFails++
		d = r.opt.StoreBackoff
		for i := 1; i < r.storeFails && d < r.opt.MaxStoreBackoff; i++ {
			d *= 2
		}
		d = jitter(min(d, r.opt.MaxStoreBackoff))
		r.storeUntil = now.Add(d)
	}
	r.mu.Unlock()
	if ok, n := r.limit.Allow("store|" + what + "|" + errClass(err)); ok {
		r.log.Error().Err(err).Str("op", what).Int("repeated", n).Dur("pause", d).Msg("store error; the reporter pauses")
	}
}

func (r *Reporter) storeOK() {
	r.mu.Lock()
	r.storeFails = 0
	r.mu.Unlock()
}

// storePause is how long the loop still waits after a store failure.
func (r *Reporter) storePause() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Until(r.storeUntil)
}

// recorded says whether a transition of entry id went through. When it
// did not, nothing is retried here: a refused transition means the entry
// moved on meanwhile, and a store error pauses the reporter while the
// claim's lease keeps the entry from coming due before it ends.
func (r *Reporter) recorded(err error, id store.ID, what string) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, store.ErrIllegalTransition) || errors.Is(err, store.ErrNotFound) {
		if ok, n := r.limit.Allow("moved|" + what); ok {
			r.log.Warn().Err(err).Str("id", id.String()).Str("op", what).Int("repeated", n).Msg("outbox entry changed meanwhile; left as it is")
		}
		return false
	}
	r.storeFailed(fmt.Errorf("%s, entry %s: %w", what, id, err), what)
	return false
}

// resume makes entries that a stop left sending pending again, due now:
// the process that held their claims is gone (the store's file lock
// admits one process), so waiting for their leases would only delay them.
func (r *Reporter) resume() error {
	stuck, err := r.st.OutboxByStatus(store.OutboxSending)
	if err != nil {
		err = fmt.Errorf("reading the outbox at start: %w", err)
		r.storeFailed(err, "resuming interrupted deliveries")
		return err
	}
	now := r.opt.Now().UTC()
	for _, e := range stuck {
		x, err := r.st.Release(e.ID, now)
		if errors.Is(err, store.ErrIllegalTransition) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			err = fmt.Errorf("resuming outbox entry %s: %w", e.ID, err)
			r.storeFailed(err, "resuming interrupted deliveries")
			return err
		}
		r.log.Warn().Str("id", e.ID.String()).Bool("transmitted", e.Transmitted).Int("resent", x.Resent).Msg("resuming a delivery interrupted by a stop")
	}
	return nil
}

// process claims one due entry and moves it on as far as it can now.
func (r *Reporter) process(ctx context.Context, e *store.OutboxEntry) {
	claimed := r.claim([]store.ID{e.ID})
	conf, send := r.processClaimed(ctx, claimed)
	for _, x := range send {
		r.send(ctx, conf, x)
	}
	r.done(claimed)
}

const dryRunReason = "dry run: reporter.enabled is false; rendered, not sent"

// processClaimed moves claimed entries on as far as it can without
// sending, and returns those to send (still claimed) with the settings
// they were evaluated under. The steps that need no network are recorded
// for all of them together: policy and de-duplication in one commit, then
// the contacts and the dry runs in another. Contact lookups are per
// entry, and so are deliveries (send).
func (r *Reporter) processClaimed(ctx context.Context, es []*store.OutboxEntry) (*settings, []*store.OutboxEntry) {
	conf := r.conf.Load()
	if len(es) == 0 {
		return conf, nil
	}
	var (
		chains    [][]store.Step
		contacted []*store.OutboxEntry // de-duplicated, to be given a contact
		ready     []*store.OutboxEntry // with recipients
	)
	for _, e := range es {
		if len(e.Recipients) > 0 {
			ready = append(ready, e)
		} else if st, ok := r.policy(ctx, conf, e); ok {
			chains = append(chains, []store.Step{st})
		}
	}
	for i, res := range r.settle(chains, "de-duplicating reports") {
		if x := r.settled(chains[i][0].ID, res[0], chains[i][0]); x != nil {
			contacted = append(contacted, x)
		}
	}

	// Contacts (looked up one by one) and dry runs, recorded together.
	chains = nil
	retry := map[store.ID]error{}
	for _, e := range contacted {
		if c := r.contactSteps(ctx, conf, e, retry); c != nil {
			chains = append(chains, c)
		}
	}
	var send []*store.OutboxEntry
	for _, e := range ready {
		if conf.enabled {
			send = append(send, e)
			continue
		}
		var m *store.RenderedMail
		if e.MessageID == "" {
			var err error
			if m, err = r.render(conf, e); err != nil {
				r.retry(ctx, conf, e, err)
				continue
			}
		}
		chains = append(chains, []store.Step{store.DryRunStep(e.ID, r.opt.Now().UTC(), m, dryRunReason)})
	}
	for i, res := range r.settle(chains, "recording contacts and dry runs") {
		var x *store.OutboxEntry
		for j := range res {
			if x = r.settled(chains[i][j].ID, res[j], chains[i][j]); x == nil {
				break
			}
		}
		if x == nil {
			continue
		}
		if err := retry[x.ID]; err != nil {
			r.retry(ctx, conf, x, err)
		} else if conf.enabled {
			send = append(send, x)
		}
	}
	return conf, send
}

// settle records chains in one commit. On a store error nothing was
// recorded: the reporter pauses, and the entries wait for their leases.
func (r *Reporter) settle(chains [][]store.Step, what string) [][]store.StepResult {
	if len(chains) == 0 {
		return nil
	}
	res, err := r.st.Settle(chains)
	if err != nil {
		r.storeFailed(fmt.Errorf("%s (%d entries): %w", what, len(chains), err), what)
		return nil
	}
	return res
}

// settled counts and logs what step st of entry id did. It returns the
// entry when it is still claimed, nil when it moved on (or the step was
// not applied).
func (r *Reporter) settled(id store.ID, res store.StepResult, st store.Step) *store.OutboxEntry {
	if errors.Is(res.Err, store.ErrSkipped) || !r.recorded(res.Err, id, st.Op()) {
		return nil
	}
	x := res.Entry
	switch {
	case res.Duplicate:
		r.opt.Metrics.Delivery(resultDuplicate)
		r.log.Info().Str("id", x.ID.String()).Str("duplicate_of", res.Primary.String()).Msg("duplicate report counted")
	case x.Status == store.OutboxWithheld:
		r.opt.Metrics.Delivery(resultWithheld)
		r.log.Info().Str("id", x.ID.String()).Str("reason", x.Reason).Msg("report withheld")
	case x.Status == store.OutboxDryRun:
		r.opt.Metrics.Delivery(resultDryRun)
		r.log.Info().Str("id", x.ID.String()).Str("contact", x.Contact).Msg("report rendered (dry run)")
	case x.Status == store.OutboxSending:
		return x
	}
	return nil
}

// policy decides the first step of a claimed entry without recipients:
// withheld when the channel or the source forbids reporting, else its
// de-duplication. When the report cannot be read the entry is retried
// later and ok is false.
func (r *Reporter) policy(ctx context.Context, conf *settings, e *store.OutboxEntry) (st store.Step, ok bool) {
	now := r.opt.Now().UTC()
	ch := conf.channels[e.Channel]
	if ch == nil {
		return store.WithholdStep(e.ID, now, fmt.Sprintf("channel %q is not configured any more", e.Channel), netip.Addr{}), true
	}
	if !ch.Has(config.UseReport) {
		return store.WithholdStep(e.ID, now, fmt.Sprintf("channel %q does not use report", e.Channel), netip.Addr{}), true
	}
	rep, err := r.st.GetReportMeta(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.WithholdStep(e.ID, now, "the report was deleted before it could be sent", netip.Addr{}), true
	} else if err != nil {
		r.retry(ctx, conf, e, fmt.Errorf("reading the report: %w", err))
		return store.Step{}, false
	}
	ip := rep.SourceIP
	if reason := sourcePolicy(ip, conf.own); reason != "" {
		return store.WithholdStep(e.ID, now, reason, ip), true
	}
	evidence, err := r.st.Raw(e.ID) // a withheld body fingerprints by source alone
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		r.retry(ctx, conf, e, fmt.Errorf("reading the evidence: %w", err))
		return store.Step{}, false
	}
	return store.DedupStep(e.ID, now, ip, fingerprint(ip, evidence), r.opt.DedupWindow), true
}

// contactSteps looks up the contact of a de-duplicated entry and returns
// the steps that record it (and in dry run the rendered report), or the
// entry's withholding when nobody is found. A lookup that failed retries
// the entry and returns nil; a report that could not be rendered is
// noted in retry, to be retried once its contact is recorded.
func (r *Reporter) contactSteps(ctx context.Context, conf *settings, e *store.OutboxEntry, retry map[store.ID]error) []store.Step {
	now := r.opt.Now().UTC()
	ch := conf.channels[e.Channel]
	if ch == nil { // removed by a reload since the policy step
		return []store.Step{store.WithholdStep(e.ID, now, fmt.Sprintf("channel %q is not configured any more", e.Channel), netip.Addr{})}
	}
	ip := e.SourceIP
	var ct *contact.Answer
	if len(ch.ReportTo.Partners) > 0 {
		ct = &contact.Answer{Emails: ch.ReportTo.Partners, Source: contact.SourcePartners}
	} else {
		var err error
		ct, err = conf.contacts.Lookup(ctx, ip)
		if errors.Is(err, contact.ErrNotFound) {
			return []store.Step{store.WithholdStep(e.ID, now, fmt.Sprintf("no abuse contact found for %s", ip), ip)}
		}
		if err != nil {
			r.retry(ctx, conf, e, fmt.Errorf("contact lookup: %w", err))
			return nil
		}
	}
	emails, dropped := ct.Emails, []string(nil)
	if ct.Source != contact.SourcePartners {
		emails, dropped = capRecipients(ct.Emails, conf.maxRecipients)
	}
	if len(dropped) > 0 {
		// Abuse desks' addresses, yet only their domains are logged: the
		// entry has them all.
		r.log.Warn().Str("id", e.ID.String()).Str("source", ct.Source).Int("kept", len(emails)).Int("dropped", len(dropped)).
			Strs("dropped_domains", domains(dropped)).Msg("abuse contact has more addresses than reporter.max_recipients_per_report; the rest are not addressed")
	}
	steps := []store.Step{store.SetContactStep(e.ID, now, emails, ct.Source, dropped)}
	if conf.enabled {
		return steps
	}
	x := *e
	x.Recipients, x.Contact = emails, strings.Join(emails, ", ")
	m, err := r.render(conf, &x)
	if err != nil {
		retry[e.ID] = err
		return steps
	}
	return append(steps, store.DryRunStep(e.ID, now, m, dryRunReason))
}

// capRecipients keeps the first n addresses: each source lists the most
// specific first (RDAP the shallowest entity, a DNS zone its own order).
func capRecipients(emails []string, n int) (kept, dropped []string) {
	if n <= 0 || len(emails) <= n {
		return emails, nil
	}
	return emails[:n:n], append([]string(nil), emails[n:]...)
}

// domains returns the distinct domains of addrs, sorted.
func domains(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if d := strings.ToLower(a[strings.LastIndexByte(a, '@')+1:]); !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// sourcePolicy says why abuse from ip must not be reported outside, or
// "" when it may be.
func sourcePolicy(ip netip.Addr, own []config.Prefix) string {
	if !ip.IsValid() {
		return "the report has no source address"
	}
	if !arf.IsPublic(ip) {
		return fmt.Sprintf("source %s is a private, reserved or bogon address: stored and shown only", ip)
	}
	for _, p := range own {
		if p.Contains(ip.Unmap()) {
			return fmt.Sprintf("source %s is in own_networks (%s): ours, stored and shown only", ip, p.Prefix)
		}
	}
	return ""
}

// fingerprint identifies an incident: the source address and the
// message's From, Subject and body (white space folded), so that one
// message sent to many trap addresses is one incident while Received,
// Date, Message-ID and the recipients (redacted anyway) do not matter.
func fingerprint(ip netip.Addr, evidence []byte) string {
	h := sha256.New()
	h.Write([]byte(ip.Unmap().String()))
	h.Write([]byte{0})
	// Obsolete syntax: "Subject :" still names the subject, as it did for
	// the receiving MUA.
	hdr, body, _ := msgheader.Cut(evidence)
	for _, name := range []string{"from", "subject"} {
		v, _ := msgheader.Obsolete.Get(hdr, name)
		h.Write([]byte(strings.Join(strings.Fields(v), " ")))
		h.Write([]byte{0})
	}
	h.Write([]byte(strings.Join(strings.Fields(string(body)), " ")))
	return hex.EncodeToString(h.Sum(nil))
}

func splitMessage(msg []byte) (hdr string, body []byte) {
	s := string(msg)
	for _, sep := range []string{"\r\n\r\n", "\n\n"} {
		if i := strings.Index(s, sep); i >= 0 {
			return s[:i], msg[i+len(sep):]
		}
	}
	return s, nil
}

func (r *Reporter) render(conf *settings, e *store.OutboxEntry) (*store.RenderedMail, error) {
	rep, err := r.st.GetReport(e.ID)
	if err != nil {
		return nil, fmt.Errorf("reading report: %w", err)
	}
	evidence, err := r.st.Raw(e.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("reading evidence: %w", err)
	}
	m := &render.Mail{
		Format: conf.format, From: conf.from, ReplyTo: conf.replyTo, To: e.Recipients,
		Hostname: conf.hostname, Org: conf.org, Channel: e.Channel, UserAgent: r.opt.UserAgent,
		Report: rep.XARF, Evidence: evidence, EntryID: e.ID.String(), Count: e.Count,
		Window: r.opt.DedupWindow, Date: r.opt.Now(),
	}
	out, err := m.Render()
	if err != nil {
		return nil, fmt.Errorf("rendering report: %w", err)
	}
	signed, err := conf.signer.Sign(out.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing report: %w", err)
	}
	return &store.RenderedMail{Format: cmp.Or(conf.format, render.FormatXARF), MessageID: out.MessageID, Subject: out.Subject,
		Preview: out.Preview, Raw: signed}, nil
}

// send renders the entry once (retries resend the same bytes), begins a
// delivery (rate limit, attempt count), delivers and records the outcome.
//
// In a cluster (Options.Claims) the entry is first claimed cluster-wide
// and counted against the shared rate counters; the claim is refreshed
// (a compare-and-set: it fails if the claim was lost) before each final
// dot, recorded done when a desk has accepted the report and released
// otherwise.
func (r *Reporter) send(ctx context.Context, conf *settings, e *store.OutboxEntry) {
	var lease Lease
	if r.opt.Claims != nil {
		if lease = r.claimCluster(ctx, conf, e); lease == nil {
			return
		}
	}
	x, accepted, unknown := r.deliver(ctx, conf, e, lease)
	switch {
	case lease == nil:
	case accepted:
		r.doneLease(lease, e.ID, x.MessageID)
	case !unknown:
		r.releaseLease(lease)
	}
	// Unknown: the message was transmitted and the desk's answer is
	// lost, so the desk may have it. The claim is left to run out; this
	// process takes it again at once for its retry (same Message-ID),
	// another node only after the TTL.
}

// deliver is send after the cluster's claim: it returns the entry as
// last recorded, whether a desk accepted the report (some recipients at
// least, now or before) and whether the answer to a transmitted message
// is unknown.
func (r *Reporter) deliver(ctx context.Context, conf *settings, e *store.OutboxEntry, lease Lease) (_ *store.OutboxEntry, accepted, unknown bool) {
	var (
		m      *store.RenderedMail
		signed []byte
		err    error
	)
	accepted = len(e.Delivered) > 0
	if e.MessageID == "" {
		if m, err = r.render(conf, e); err != nil {
			r.retry(ctx, conf, e, err)
			return e, accepted, unknown
		}
		signed = m.Raw
	} else if signed, err = r.st.OutboxMail(e.ID); err != nil {
		r.retry(ctx, conf, e, fmt.Errorf("reading the rendered report: %w", err))
		return e, accepted, unknown
	}
	perHour := conf.perHour
	if lease != nil {
		now := r.opt.Now().UTC()
		limited, err := r.opt.Claims.RateTake(ctx, lowerAll(e.Remaining()), now, perHour)
		if err != nil {
			r.retry(ctx, conf, e, fmt.Errorf("counting the report against the cluster's rate limits: %w", err))
			return e, accepted, unknown
		}
		if limited != nil {
			_, err := r.st.WaitRate(e.ID, now, perHour, *limited)
			if r.recorded(err, e.ID, "rate-limiting a report") {
				r.rateLimited(e.ID, limited)
			}
			return e, accepted, unknown
		}
		perHour = -1 // counted cluster-wide
	}
	x, limited, err := r.st.BeginDelivery(e.ID, r.opt.Now().UTC(), r.opt.Lease, perHour, m)
	if !r.recorded(err, e.ID, "beginning a delivery") {
		return e, accepted, unknown
	}
	if limited != nil {
		r.rateLimited(e.ID, limited)
		return e, accepted, unknown
	}
	e = x
	var errs []error
	permanent, tried := true, false
	for _, group := range conf.deliver.Groups(e.Remaining()) {
		tried = true
		dotted := false
		t, err := conf.deliver.Send(ctx, conf.from, group, signed, func() error {
			if lease != nil {
				// Past the dot the desk may have the report: only the
				// claim's holder goes on.
				if err := lease.Refresh(ctx); err != nil {
					return fmt.Errorf("refreshing the cluster claim: %w", err)
				}
			}
			if err := r.st.MarkTransmitted(e.ID, r.opt.Now().UTC()); err != nil {
				return err
			}
			dotted = true
			return nil
		})
		if t != nil && len(t.Accepted) > 0 {
			accepted = true
		}
		var se *smtp.SMTPError
		if dotted && err != nil && !errors.As(err, &se) {
			unknown = true
		}
		row := attemptRow(t, err)
		tr := store.Transaction{Rejected: map[string]string{}, Attempt: &row}
		if t != nil {
			tr.Accepted, tr.Reply = t.Accepted, t.Reply
			for a, why := range t.Rejected {
				tr.Rejected[a] = replyText(errors.New(why))
			}
		}
		if err != nil {
			errs = append(errs, err)
			var perm *deliver.PermanentError
			if errors.As(err, &perm) {
				for _, a := range group {
					if _, ok := tr.Rejected[a]; !ok && !slices.Contains(tr.Accepted, a) {
						tr.Rejected[a] = replyText(err)
					}
				}
			} else {
				permanent = false
			}
		}
		x, err := r.st.RecordTransaction(e.ID, r.opt.Now().UTC(), tr)
		if !r.recorded(err, e.ID, "recording a delivery") {
			// The entry stays sending until its lease ends, then goes
			// to the recipients that have not accepted it on record.
			return e, accepted, unknown
		}
		e = x
	}
	r.finish(ctx, conf, e, errors.Join(errs...), permanent, tried)
	return e, accepted, unknown
}

// attemptRow is the history row of one SMTP transaction: where it went,
// what came of it and the server's last answer.
func attemptRow(t *deliver.Transmission, err error) store.Attempt {
	var a store.Attempt
	if t != nil {
		a.MX, a.IP = t.Host, t.Addr
	}
	accepted := t != nil && len(t.Accepted) > 0
	var (
		se   *smtp.SMTPError
		perm *deliver.PermanentError
	)
	switch {
	case errors.As(err, &se):
		a.Code, a.EnhancedCode, a.Reply = se.Code, enhanced(se.EnhancedCode), se.Message
	case accepted:
		a.Code, a.Reply = 250, strings.TrimPrefix(t.Reply, "250 ")
		if f := strings.Fields(a.Reply); len(f) > 0 && isEnhanced(f[0]) {
			a.EnhancedCode, a.Reply = f[0], strings.TrimSpace(strings.TrimPrefix(a.Reply, f[0]))
		}
	case t != nil && t.Refusal != nil:
		a.Code, a.EnhancedCode, a.Reply = t.Refusal.Code, enhanced(t.Refusal.EnhancedCode), t.Refusal.Message
	}
	switch {
	case accepted:
		a.Outcome = store.AttemptSent
	case err == nil, errors.As(err, &perm):
		// No error and nobody accepted: every recipient refused it.
		a.Outcome = store.AttemptPermFail
	default:
		a.Outcome = store.AttemptTempFail
	}
	if err != nil {
		a.Detail = replyText(err)
	}
	if t != nil && len(t.Rejected) > 0 {
		refused := make([]string, 0, len(t.Rejected))
		for r := range t.Rejected {
			refused = append(refused, r)
		}
		slices.Sort(refused)
		a.Detail = strings.TrimPrefix(a.Detail+"; refused by "+strings.Join(refused, ", "), "; ")
	}
	return a
}

// enhanced formats an RFC 3463 code, or "" when the reply had none.
func enhanced(c smtp.EnhancedCode) string {
	if c[0] < 2 || c[0] > 5 || c[1] < 0 || c[2] < 0 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

func isEnhanced(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || len(p[0]) != 1 || p[0] < "2" || p[0] > "5" {
		return false
	}
	for _, x := range p[1:] {
		if x == "" || len(x) > 3 || strings.Trim(x, "0123456789") != "" {
			return false
		}
	}
	return true
}

// rateLimited counts and logs an entry that waits for a rate limit.
func (r *Reporter) rateLimited(id store.ID, limited *store.RateLimit) {
	r.opt.Metrics.Delivery(resultRateLimited)
	if ok, n := r.limit.Allow("rate|" + strings.ToLower(limited.Contact)); ok {
		r.log.Info().Str("id", id.String()).Str("contact", limited.Contact).Time("until", limited.Until).Int("repeated", n).Msg("report waits for the contact's rate limit")
	}
}

// finish records the outcome of a claimed entry after its transactions
// (tried: there was at least one, and its row is recorded).
func (r *Reporter) finish(ctx context.Context, conf *settings, e *store.OutboxEntry, err error, permanent, tried bool) {
	id := e.ID.String()
	if len(e.Remaining()) > 0 && err != nil && !permanent {
		r.retryAfter(ctx, conf, e, err, tried)
		return
	}
	lastErr := ""
	if err != nil {
		lastErr = replyText(err)
	}
	now := r.opt.Now().UTC()
	if len(e.Delivered) == 0 {
		var row *store.Attempt
		if !tried {
			row = &store.Attempt{Outcome: store.AttemptPermFail, Detail: "no recipient left to send to: " + strings.Join(e.Rejected, ", ")}
		}
		x, uerr := r.st.GiveUp(e.ID, now, lastErr, "the abuse desk refused the report permanently", row)
		if !r.recorded(uerr, e.ID, "recording a refusal") {
			return
		}
		r.opt.Metrics.Delivery(resultFailed)
		if ok, n := r.limit.Allow("refused|" + errClass(err)); ok {
			r.log.Warn().Str("id", id).Str("contact", x.Contact).Str("error", x.LastError).Int("repeated", n).Msg("report refused permanently")
		}
		return
	}
	ch := conf.channels[e.Channel]
	forget := ch != nil && !ch.Has(config.UseStore)
	x, uerr := r.st.MarkSent(e.ID, now, lastErr, forget)
	if !r.recorded(uerr, e.ID, "recording a delivery") {
		return
	}
	r.opt.Metrics.Delivery(resultSent)
	r.log.Info().Str("id", id).Str("contact", x.Contact).Int("attempts", x.Attempts).Bool("data_deleted", x.DataDeleted).Msg("report sent")
}

// backoff is the wait before retry n (1-based): first·2^(n-1), capped at
// 6 h, with ±20 % jitter so that entries failing together do not retry
// together.
func backoff(first time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < 6*time.Hour; i++ {
		d *= 2
	}
	return jitter(min(d, 6*time.Hour))
}

// jitter spreads d by ±20 %.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// retry makes a claimed entry pending again after a backoff that grows
// with its temporary failures, or fails it when give_up_after has passed
// since it was created (or requeued by an operator). The failure is one
// of ours or of a lookup, before any SMTP transaction: it gets a row of
// its own in the entry's history.
func (r *Reporter) retry(ctx context.Context, conf *settings, e *store.OutboxEntry, cause error) {
	r.retryAfter(ctx, conf, e, cause, false)
}

// retryAfter is retry; tried says that the transactions' rows already
// record the failure.
func (r *Reporter) retryAfter(ctx context.Context, conf *settings, e *store.OutboxEntry, cause error, tried bool) {
	now := r.opt.Now().UTC()
	var row *store.Attempt
	if !tried {
		row = &store.Attempt{Outcome: store.AttemptTempFail, Detail: replyText(cause)}
	}
	if ctx.Err() != nil {
		// Cut short by a stop: not the peer's failure. Due again at once
		// (at the next start), and nothing to log.
		if row != nil {
			row.Outcome = store.AttemptInterrupted
		}
		_, err := r.st.Retry(e.ID, now, now, replyText(cause), "interrupted by a stop", row)
		r.recorded(err, e.ID, "deferring a report")
		return
	}
	base := e.Created
	if e.Requeued.After(base) {
		base = e.Requeued
	}
	giveUp := base.Add(conf.giveUpAfter)
	if !now.Before(giveUp) {
		reason := fmt.Sprintf("gave up: no delivery within reporter.retry.give_up_after (%s)", conf.giveUpAfter)
		// Giving up is a decision of its own, whatever the last try said.
		x, err := r.st.GiveUp(e.ID, now, replyText(cause), reason, &store.Attempt{Outcome: store.AttemptGaveUp, Detail: reason + ": " + replyText(cause)})
		if !r.recorded(err, e.ID, "giving up a report") {
			return
		}
		r.opt.Metrics.Delivery(resultFailed)
		if ok, n := r.limit.Allow("gave-up|" + errClass(cause)); ok {
			r.log.Warn().Str("id", e.ID.String()).Str("error", x.LastError).Int("repeated", n).Msg("report given up")
		}
		return
	}
	next := now.Add(backoff(conf.retryFirst, e.Retries+1))
	if next.After(giveUp) {
		next = giveUp
	}
	x, err := r.st.Retry(e.ID, now, next, replyText(cause), "temporary failure; retrying", row)
	if !r.recorded(err, e.ID, "deferring a report") {
		return
	}
	r.opt.Metrics.Delivery(resultDeferred)
	if ok, n := r.limit.Allow("deferred|" + errClass(cause)); ok {
		r.log.Info().Str("id", e.ID.String()).Str("error", x.LastError).Time("next_attempt", next).Int("repeated", n).Msg("report deferred")
	}
}

// errClass names the kind of an error for the log limiter: an SMTP reply
// code, a DNS or network failure, not the address or id it was about.
func errClass(err error) string {
	if err == nil {
		return ""
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("smtp %d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return "dns " + de.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "net " + oe.Op + " " + oe.Err.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return "errno " + errno.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// replyText renders an error for the entry's last_error.
func replyText(err error) string {
	s := err.Error()
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}
