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
//  5. rate limit: at most per_contact_per_hour claims per contact; excess
//     waits pending until a slot frees. Never dropped.
//  6. claim: render, DKIM-sign, store the message and mark the entry
//     sending, in one durable commit; then deliver. Just before the final
//     "." of DATA the entry is durably marked transmitted.
//  7. outcome: 250 sent (a channel whose uses lack store then loses the
//     report and its evidence); 5xx failed; 4xx or no answer: pending
//     again after an exponential backoff with jitter, until give_up_after.
//
// At start, entries left sending by a crash are made pending again and
// resent with the same bytes and Message-ID. If the crash came after the
// transmitted mark (between the desk's 250 and our commit), the desk may
// get the report twice; Resent counts these, and the identical
// Message-ID lets the desk discard the copy. See docs/reporting.md.
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
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/bbolt"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// Delivery results counted by metrics.Delivery (a fixed set).
const (
	ResultSent        = "sent"
	ResultDeferred    = "deferred"
	ResultFailed      = "failed"
	ResultDryRun      = "dry-run"
	ResultWithheld    = "withheld"
	ResultDuplicate   = "duplicate"
	ResultRateLimited = "rate-limited"
)

// DefaultDedupWindow is how long the same source and evidence count as
// one incident.
const DefaultDedupWindow = 24 * time.Hour

// Options are the optional parts of a Reporter.
type Options struct {
	Metrics *metrics.Metrics
	Logger  zerolog.Logger
	// Workers deliver in parallel (default 4).
	Workers int
	// DedupWindow defaults to DefaultDedupWindow.
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
	// Now is the clock (tests).
	Now func() time.Time
}

// Reporter works through the outbox. Create it with New, run it with Run.
type Reporter struct {
	st   *store.Store
	opt  Options
	log  zerolog.Logger
	set  atomic.Pointer[settings]
	wake chan struct{}

	mu       sync.Mutex
	inflight map[store.ID]bool
}

// settings is what the configuration decides for the reporter. Reload
// swaps it whole; each step of an entry reads the settings current then.
type settings struct {
	cfg      *config.Config
	contacts *Contacts
	signer   *Signer
	deliver  *Deliverer
	channels map[string]*config.Channel
}

// s returns the current settings.
func (r *Reporter) s() *settings { return r.set.Load() }

// New prepares a Reporter: it reads the DKIM key and the smarthost
// password once.
func New(cfg *config.Config, st *store.Store, opt Options) (*Reporter, error) {
	opt.Workers = cmp.Or(opt.Workers, 4)
	opt.DedupWindow = cmp.Or(opt.DedupWindow, DefaultDedupWindow)
	opt.UserAgent = cmp.Or(opt.UserAgent, "xarfd")
	opt.Poll = cmp.Or(opt.Poll, 2*time.Second)
	if opt.Now == nil {
		opt.Now = time.Now
	}
	r := &Reporter{
		st: st, opt: opt, log: opt.Logger,
		wake:     make(chan struct{}, 1),
		inflight: map[store.ID]bool{},
	}
	if err := r.Reload(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload makes cfg's reporter, contacts, channels, own_networks and
// sender settings apply from the next step of every entry on (it reads
// the DKIM key and the smarthost password again). On error the running
// settings stay.
func (r *Reporter) Reload(cfg *config.Config) error {
	signer, err := NewSigner(&cfg.Reporter.DKIM)
	if err != nil {
		return err
	}
	sh := cfg.Reporter.Smarthost
	var password string
	if sh.PasswordFile != "" {
		b, err := os.ReadFile(sh.PasswordFile)
		if err != nil {
			return fmt.Errorf("reporter.smarthost.password_file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	var rdap *RDAP
	if cfg.Contacts.RDAP.Enabled {
		rdap = NewRDAP(cfg.Contacts.RDAP.BaseURL, r.opt.HTTPClient)
	}
	set := &settings{
		cfg: cfg, signer: signer,
		contacts: NewContacts(&cfg.Contacts, cfg.Resolver, r.st, rdap),
		deliver: &Deliverer{Smarthost: sh.Address, TLS: sh.TLS, Username: sh.Username, Password: password,
			HeloName: cfg.Hostname, Resolver: NewDNSResolver(cfg.Resolver), MXPort: r.opt.MXPort, TLSConfig: r.opt.TLSConfig},
		channels: map[string]*config.Channel{},
	}
	set.contacts.now = r.opt.Now
	for i := range cfg.Channels {
		set.channels[cfg.Channels[i].Name] = &cfg.Channels[i]
	}
	r.set.Store(set)
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

// Run resumes what a crash interrupted, then processes due entries until
// ctx ends, and waits for the deliveries in flight (they are cut short by
// ctx: an interrupted entry is resumed at the next start).
func (r *Reporter) Run(ctx context.Context) error {
	if err := r.Resume(); err != nil {
		return err
	}
	work := make(chan store.OutboxEntry)
	var wg sync.WaitGroup
	for range r.opt.Workers {
		wg.Go(func() {
			for e := range work {
				r.Process(ctx, &e)
				r.mu.Lock()
				delete(r.inflight, e.ID)
				r.mu.Unlock()
				r.Wake()
			}
		})
	}
	defer wg.Wait()
	defer close(work)
	lastPrune := time.Time{}
	for {
		if time.Since(lastPrune) > 10*time.Minute {
			if n, err := r.st.PruneOutboxMail(); err != nil {
				r.log.Error().Err(err).Msg("pruning rendered reports")
			} else if n > 0 {
				r.log.Info().Int("deleted", n).Msg("rendered reports of expired entries deleted")
			}
			lastPrune = time.Now()
		}
		due, next, err := r.st.DueOutbox(r.opt.Now(), 64)
		if err != nil {
			r.log.Error().Err(err).Msg("reading the outbox")
		}
	dispatch:
		for _, e := range due {
			r.mu.Lock()
			busy := r.inflight[e.ID]
			if !busy {
				r.inflight[e.ID] = true
			}
			r.mu.Unlock()
			if busy {
				continue
			}
			select {
			case work <- e:
			case <-ctx.Done():
				r.mu.Lock()
				delete(r.inflight, e.ID)
				r.mu.Unlock()
				break dispatch
			}
		}
		sleep := r.opt.Poll
		if !next.IsZero() {
			sleep = min(sleep, max(next.Sub(r.opt.Now()), 10*time.Millisecond))
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Resume makes entries that a crash left sending pending again, due now.
func (r *Reporter) Resume() error {
	stuck, err := r.st.OutboxByStatus(store.OutboxSending)
	if err != nil {
		return fmt.Errorf("reading the outbox at start: %w", err)
	}
	now := r.opt.Now().UTC()
	for _, e := range stuck {
		_, err := r.st.UpdateOutbox(e.ID, func(_ *bbolt.Tx, e *store.OutboxEntry) error {
			if e.Status != store.OutboxSending {
				return nil
			}
			e.Status, e.NextAttempt, e.Updated = store.OutboxPending, now, now
			if e.Transmitted {
				e.Resent++
				e.Transmitted = false
				e.LastError = "interrupted after the message was transmitted, before the answer was recorded; resending with the same Message-ID"
			} else {
				e.LastError = "interrupted before the message was transmitted; resending"
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("resuming outbox entry %s: %w", e.ID, err)
		}
		r.log.Warn().Str("id", e.ID.String()).Bool("transmitted", e.Transmitted).Msg("resuming a delivery interrupted by a stop")
	}
	return nil
}

// Process moves one pending entry on as far as it can now.
func (r *Reporter) Process(ctx context.Context, e *store.OutboxEntry) {
	if e.Status != store.OutboxPending {
		return
	}
	if len(e.Recipients) == 0 {
		ok, err := r.evaluate(ctx, e)
		if err != nil {
			r.log.Error().Err(err).Str("id", e.ID.String()).Msg("evaluating outbox entry")
			return
		}
		if !ok {
			return
		}
	}
	if !r.s().cfg.Reporter.Enabled {
		r.dryRun(e)
		return
	}
	r.send(ctx, e)
}

func (r *Reporter) withhold(e *store.OutboxEntry, reason string) error {
	now := r.opt.Now().UTC()
	_, err := r.st.UpdateOutbox(e.ID, func(_ *bbolt.Tx, x *store.OutboxEntry) error {
		x.Status, x.Reason, x.Updated, x.NextAttempt = store.OutboxWithheld, reason, now, time.Time{}
		if e.SourceIP.IsValid() {
			x.SourceIP = e.SourceIP
		}
		return nil
	})
	if err == nil {
		r.opt.Metrics.Delivery(ResultWithheld)
		r.log.Info().Str("id", e.ID.String()).Str("reason", reason).Msg("report withheld")
	}
	return err
}

// evaluate applies policy, de-duplication and contact lookup to a fresh
// entry. It returns true when e now has recipients and may be sent.
func (r *Reporter) evaluate(ctx context.Context, e *store.OutboxEntry) (bool, error) {
	ch := r.s().channels[e.Channel]
	if ch == nil {
		return false, r.withhold(e, fmt.Sprintf("channel %q is not configured any more", e.Channel))
	}
	if !ch.Has(config.UseReport) {
		return false, r.withhold(e, fmt.Sprintf("channel %q does not use report", e.Channel))
	}
	rep, err := r.st.GetReportMeta(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return false, r.withhold(e, "the report was deleted before it could be sent")
	} else if err != nil {
		return false, err
	}
	ip := rep.SourceIP
	e.SourceIP = ip
	if reason := SourcePolicy(ip, r.s().cfg.OwnNetworks); reason != "" {
		return false, r.withhold(e, reason)
	}
	evidence, _ := r.st.Raw(e.ID) // a withheld body fingerprints by source alone
	fp := Fingerprint(ip, evidence)
	now := r.opt.Now().UTC()
	var primary store.ID
	var dup bool
	_, err = r.st.UpdateOutbox(e.ID, func(tx *bbolt.Tx, x *store.OutboxEntry) error {
		if x.Status != store.OutboxPending {
			return store.ErrNotFound
		}
		x.SourceIP, x.Fingerprint, x.Updated = ip, fp, now
		x.Count = max(x.Count, 1)
		p, isDup, err := store.DedupTx(tx, fp, e.ID, now, r.opt.DedupWindow)
		if err != nil {
			return err
		}
		primary, dup = p, isDup
		if !isDup {
			return nil
		}
		pe, err := store.GetOutboxTx(tx, p)
		if err != nil {
			return err
		}
		pe.Count = max(pe.Count, 1) + 1
		pe.Updated = now
		if err := store.PutOutboxTx(tx, pe); err != nil {
			return err
		}
		x.Status, x.DuplicateOf, x.NextAttempt = store.OutboxDuplicate, p, time.Time{}
		x.Reason = fmt.Sprintf("same source and message as report %s within %s: counted there", p, r.opt.DedupWindow)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("de-duplicating: %w", err)
	}
	if dup {
		r.opt.Metrics.Delivery(ResultDuplicate)
		r.log.Info().Str("id", e.ID.String()).Str("duplicate_of", primary.String()).Msg("duplicate report counted")
		return false, nil
	}

	var ct *Contact
	if len(ch.ReportTo.Partners) > 0 {
		ct = &Contact{Emails: ch.ReportTo.Partners, Source: SourcePartners}
	} else {
		ct, err = r.s().contacts.Lookup(ctx, ip)
		if errors.Is(err, ErrNoContact) {
			return false, r.withhold(e, fmt.Sprintf("no abuse contact found for %s", ip))
		}
		if err != nil {
			r.retryLater(e, fmt.Errorf("contact lookup: %w", err), false)
			return false, nil
		}
	}
	x, err := r.st.UpdateOutbox(e.ID, func(_ *bbolt.Tx, x *store.OutboxEntry) error {
		x.Recipients = ct.Emails
		x.Contact = strings.Join(ct.Emails, ", ")
		x.ContactSource = ct.Source
		x.Reason, x.Updated = "", r.opt.Now().UTC()
		return nil
	})
	if err != nil {
		return false, err
	}
	*e = *x
	return true, nil
}

// SourcePolicy says why abuse from ip must not be reported outside, or
// "" when it may be.
func SourcePolicy(ip netip.Addr, own []config.Prefix) string {
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

// Fingerprint identifies an incident: the source address and the
// message's From, Subject and body (white space folded), so that one
// message sent to many trap addresses is one incident while Received,
// Date, Message-ID and the recipients (redacted anyway) do not matter.
func Fingerprint(ip netip.Addr, evidence []byte) string {
	h := sha256.New()
	h.Write([]byte(ip.Unmap().String()))
	h.Write([]byte{0})
	hdr, body := splitMessage(evidence)
	for _, name := range []string{"from", "subject"} {
		h.Write([]byte(strings.Join(strings.Fields(headerValue(hdr, name)), " ")))
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

// headerValue returns the unfolded value of the first field name.
func headerValue(hdr, name string) string {
	lines := strings.Split(strings.ReplaceAll(hdr, "\r\n", "\n"), "\n")
	for i, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), name) {
			continue
		}
		for j := i + 1; j < len(lines) && (strings.HasPrefix(lines[j], " ") || strings.HasPrefix(lines[j], "\t")); j++ {
			v += " " + lines[j]
		}
		return v
	}
	return ""
}

func (r *Reporter) render(e *store.OutboxEntry, to []string) (*Rendered, []byte, error) {
	rep, err := r.st.GetReport(e.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("reading report: %w", err)
	}
	evidence, err := r.st.Raw(e.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("reading evidence: %w", err)
	}
	from := cmp.Or(r.s().cfg.Reporter.From, r.s().cfg.Sender.Contact)
	m := &Mail{
		Format: r.s().cfg.Reporter.Format, From: from, ReplyTo: r.s().cfg.Sender.Contact, To: to,
		Hostname: r.s().cfg.Hostname, Org: r.s().cfg.Sender.Org, Channel: e.Channel, UserAgent: r.opt.UserAgent,
		Report: rep.XARF, Evidence: evidence, EntryID: e.ID.String(), Count: e.Count,
		Window: r.opt.DedupWindow, Date: r.opt.Now(),
	}
	out, err := Render(m)
	if err != nil {
		return nil, nil, err
	}
	signed, err := r.s().signer.Sign(out.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return out, signed, nil
}

func (r *Reporter) dryRun(e *store.OutboxEntry) {
	out, signed, err := r.render(e, e.Recipients)
	if err != nil {
		r.log.Error().Err(err).Str("id", e.ID.String()).Msg("rendering report")
		r.retryLater(e, err, false)
		return
	}
	now := r.opt.Now().UTC()
	_, err = r.st.UpdateOutbox(e.ID, func(tx *bbolt.Tx, x *store.OutboxEntry) error {
		if x.Status != store.OutboxPending {
			return nil
		}
		r.setRendered(x, out, signed)
		x.Status, x.Updated, x.NextAttempt = store.OutboxDryRun, now, time.Time{}
		x.Reason = "dry run: reporter.enabled is false; rendered, not sent"
		return store.PutOutboxMailTx(tx, x.ID, signed)
	})
	if err != nil {
		r.log.Error().Err(err).Str("id", e.ID.String()).Msg("storing dry-run report")
		return
	}
	r.opt.Metrics.Delivery(ResultDryRun)
	r.log.Info().Str("id", e.ID.String()).Str("contact", e.Contact).Msg("report rendered (dry run)")
}

func (r *Reporter) setRendered(x *store.OutboxEntry, out *Rendered, signed []byte) {
	x.Format = cmp.Or(r.s().cfg.Reporter.Format, FormatXARF)
	x.MessageID, x.Subject, x.Preview, x.RenderedSize = out.MessageID, out.Subject, out.Preview, len(signed)
}

// errRateLimited aborts a claim transaction (rolling back its counts).
var errRateLimited = errors.New("rate limited")

func (r *Reporter) remaining(e *store.OutboxEntry) []string {
	var out []string
	for _, a := range e.Recipients {
		if !slices.Contains(e.Delivered, a) && !slices.Contains(e.Rejected, a) {
			out = append(out, a)
		}
	}
	return out
}

// send claims the entry (rate limit, render once, sending), delivers and
// records the outcome.
func (r *Reporter) send(ctx context.Context, e *store.OutboxEntry) {
	id := e.ID.String()
	var (
		rendered *Rendered
		signed   []byte
		err      error
	)
	if e.MessageID == "" {
		if rendered, signed, err = r.render(e, e.Recipients); err != nil {
			r.log.Error().Err(err).Str("id", id).Msg("rendering report")
			r.retryLater(e, err, false)
			return
		}
	} else if signed, err = r.st.OutboxMail(e.ID); err != nil {
		r.log.Error().Err(err).Str("id", id).Msg("reading rendered report")
		r.retryLater(e, err, false)
		return
	}
	now := r.opt.Now().UTC()
	var free time.Time
	var limited string
	claimed, err := r.st.UpdateOutbox(e.ID, func(tx *bbolt.Tx, x *store.OutboxEntry) error {
		if x.Status != store.OutboxPending {
			return store.ErrNotFound
		}
		for _, a := range r.remaining(x) {
			ok, at, err := store.RateTakeTx(tx, strings.ToLower(a), now, r.s().cfg.Reporter.PerContactPerHour)
			if err != nil {
				return err
			}
			if !ok {
				free, limited = at, a
				return errRateLimited
			}
		}
		if rendered != nil {
			r.setRendered(x, rendered, signed)
			if err := store.PutOutboxMailTx(tx, x.ID, signed); err != nil {
				return err
			}
		}
		x.Status, x.Attempts, x.Updated, x.Transmitted = store.OutboxSending, x.Attempts+1, now, false
		return nil
	})
	if errors.Is(err, errRateLimited) {
		_, err = r.st.UpdateOutbox(e.ID, func(_ *bbolt.Tx, x *store.OutboxEntry) error {
			x.NextAttempt, x.Updated = free, now
			x.Reason = fmt.Sprintf("rate limit: %d reports per hour to %s; waiting until %s", r.s().cfg.Reporter.PerContactPerHour, limited, free.Format(time.RFC3339))
			return nil
		})
		if err == nil {
			r.opt.Metrics.Delivery(ResultRateLimited)
			r.log.Info().Str("id", id).Str("contact", limited).Time("until", free).Msg("report waits for the contact's rate limit")
		}
		return
	}
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.log.Error().Err(err).Str("id", id).Msg("claiming outbox entry")
		}
		return
	}
	e = claimed
	from := cmp.Or(r.s().cfg.Reporter.From, r.s().cfg.Sender.Contact)
	var errs []error
	permanent := true
	for _, group := range r.groups(r.remaining(e)) {
		t, err := r.s().deliver.Send(ctx, from, group, signed, func() error {
			_, err := r.st.UpdateOutbox(e.ID, func(_ *bbolt.Tx, x *store.OutboxEntry) error {
				x.Transmitted = true
				return nil
			})
			return err
		})
		if err != nil {
			errs = append(errs, err)
			var perm *PermanentError
			if !errors.As(err, &perm) {
				permanent = false
			}
		}
		e, err = r.st.UpdateOutbox(e.ID, func(_ *bbolt.Tx, x *store.OutboxEntry) error {
			x.Transmitted = false
			if t != nil {
				x.Delivered = append(x.Delivered, t.Accepted...)
				for a, why := range t.Rejected {
					x.Rejected = append(x.Rejected, a)
					x.LastError = a + ": " + replyText(errors.New(why))
				}
				if t.Reply != "" {
					x.Reply = t.Reply
				}
			}
			if err != nil {
				var perm *PermanentError
				if errors.As(err, &perm) {
					x.Rejected = append(x.Rejected, group...)
				}
			}
			return nil
		})
		if err != nil {
			r.log.Error().Err(err).Str("id", id).Msg("recording delivery; the entry is resumed at the next start")
			return
		}
	}
	r.finish(e, errors.Join(errs...), permanent)
}

// groups splits recipients into transactions: one for the smarthost, one
// per domain for MX delivery.
func (r *Reporter) groups(rcpts []string) [][]string {
	if r.s().deliver.Smarthost != "" || len(rcpts) == 0 {
		return [][]string{rcpts}
	}
	var out [][]string
	idx := map[string]int{}
	for _, a := range rcpts {
		d := domainOf(a)
		if i, ok := idx[d]; ok {
			out[i] = append(out[i], a)
			continue
		}
		idx[d] = len(out)
		out = append(out, []string{a})
	}
	return out
}

// finish records the outcome of a claimed entry after its transactions.
func (r *Reporter) finish(e *store.OutboxEntry, err error, permanent bool) {
	id := e.ID.String()
	now := r.opt.Now().UTC()
	left := r.remaining(e)
	if len(left) > 0 && err != nil && !permanent {
		r.retryLater(e, err, true)
		return
	}
	ch := r.s().channels[e.Channel]
	forget := ch != nil && !ch.Has(config.UseStore)
	status := store.OutboxSent
	if len(e.Delivered) == 0 {
		status = store.OutboxFailed
	}
	x, uerr := r.st.UpdateOutbox(e.ID, func(tx *bbolt.Tx, x *store.OutboxEntry) error {
		x.Status, x.Updated, x.NextAttempt = status, now, time.Time{}
		if err != nil {
			x.LastError = replyText(err)
		}
		if status == store.OutboxSent {
			x.SentAt, x.Reason = now, ""
			if len(x.Rejected) > 0 {
				x.Reason = "some recipients refused the report: " + strings.Join(x.Rejected, ", ")
			}
			if forget {
				x.DataDeleted = true
				return store.ForgetReportTx(tx, x.ID)
			}
		} else {
			x.Reason = "the abuse desk refused the report permanently"
		}
		return nil
	})
	if uerr != nil {
		r.log.Error().Err(uerr).Str("id", id).Msg("recording delivery outcome")
		return
	}
	if status == store.OutboxSent {
		r.opt.Metrics.Delivery(ResultSent)
		r.log.Info().Str("id", id).Str("contact", x.Contact).Int("attempts", x.Attempts).Bool("data_deleted", x.DataDeleted).Msg("report sent")
	} else {
		r.opt.Metrics.Delivery(ResultFailed)
		r.log.Warn().Str("id", id).Str("contact", x.Contact).Str("error", x.LastError).Msg("report refused permanently")
	}
}

// Backoff is the wait before retry n (1-based): first·2^(n-1), capped at
// 6 h, with ±20 % jitter so that entries failing together do not retry
// together.
func Backoff(first time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < 6*time.Hour; i++ {
		d *= 2
	}
	d = min(d, 6*time.Hour)
	j := time.Duration((rand.Float64()*0.4 - 0.2) * float64(d))
	return d + j
}

// retryLater puts a claimed (or still pending) entry back to pending
// after a backoff, or fails it when give_up_after has passed since it was
// created.
func (r *Reporter) retryLater(e *store.OutboxEntry, cause error, counted bool) {
	now := r.opt.Now().UTC()
	giveUp := e.Created.Add(r.s().cfg.Reporter.Retry.GiveUpAfter.D())
	n := max(e.Attempts, 1)
	next := now.Add(Backoff(r.s().cfg.Reporter.Retry.First.D(), n))
	failed := !now.Before(giveUp)
	if next.After(giveUp) && !failed {
		next = giveUp
	}
	x, err := r.st.UpdateOutbox(e.ID, func(_ *bbolt.Tx, x *store.OutboxEntry) error {
		x.LastError, x.Updated, x.Transmitted = replyText(cause), now, false
		if failed {
			x.Status, x.NextAttempt = store.OutboxFailed, time.Time{}
			x.Reason = fmt.Sprintf("gave up: no delivery within reporter.retry.give_up_after (%s)", r.s().cfg.Reporter.Retry.GiveUpAfter.D())
			return nil
		}
		x.Status, x.NextAttempt = store.OutboxPending, next
		x.Reason = "temporary failure; retrying"
		return nil
	})
	if err != nil {
		r.log.Error().Err(err).Str("id", e.ID.String()).Msg("recording deferral")
		return
	}
	if failed {
		r.opt.Metrics.Delivery(ResultFailed)
		r.log.Warn().Str("id", e.ID.String()).Str("error", x.LastError).Msg("report given up")
		return
	}
	if counted {
		r.opt.Metrics.Delivery(ResultDeferred)
	}
	r.log.Info().Str("id", e.ID.String()).Str("error", x.LastError).Time("next_attempt", next).Msg("report deferred")
}
