package intel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// Event says that an indicator was listed, expired or delisted by hand;
// the API's stream sends it as an "indicator" event.
type Event struct {
	Type  string    `json:"type"` // listed | expired | delisted
	Kind  Kind      `json:"kind"`
	Value string    `json:"value"`
	At    time.Time `json:"at"`
	Until time.Time `json:"listed_until,omitzero"`
}

// Event types.
const (
	EventListed   = "listed"
	EventExpired  = "expired"
	EventDelisted = "delisted"
)

// Options tune a Service; the zero value is fine.
type Options struct {
	// Now is the clock (tests set it); nil = time.Now.
	Now func() time.Time
	// OnEvent is called for every listing change; it must not block.
	OnEvent func(Event)
	Logger  zerolog.Logger
	// Metrics receives the intel counters; nil counts nothing.
	Metrics *Metrics
}

// Service mines reports, keeps the listed set in memory and answers
// lookups. All methods are safe for concurrent use.
type Service struct {
	cfg     *config.Config // as at New: zones, host name, policy
	st      *store.Store
	chans   atomic.Pointer[channels]
	policy  Policy
	now     func() time.Time
	onEvent func(Event)
	log     zerolog.Logger
	metrics *Metrics
	wake    chan struct{}
	// ops carries a delisting to every node of a cluster; nil on a
	// single node. Set before serving (SetReplicator).
	ops ops.Replicator

	mu     sync.RWMutex
	listed map[Kind]map[string]Listing
	// net64 lists the /64 of every listed IPv6 address: IPv6 senders move
	// within their /64, and rbldnsd's ip6tset lists /64s.
	net64 map[netip.Prefix]Listing
}

// Listing is one listed indicator in memory.
type Listing struct {
	Since, Until time.Time
	// Reason is the short text of TXT answers.
	Reason string
}

// channels is what the channels decide for mining: which are mined, the
// exclusions built from their addresses and redaction, their retention.
// Reload swaps it whole, so that a trap address added by a reload is
// never extracted from the next report on.
type channels struct {
	cfg   *config.Config
	x     *Extractor
	names []string // channels that use intel
}

func channelsOf(cfg *config.Config) *channels {
	c := &channels{cfg: cfg, x: NewExtractor(cfg)}
	for i := range cfg.Channels {
		if cfg.Channels[i].Has(config.UseIntel) {
			c.names = append(c.names, cfg.Channels[i].Name)
		}
	}
	return c
}

// batch is how many reports one mining transaction takes.
const batch = 256

// New builds the service and loads the listed set from the store.
func New(cfg *config.Config, st *store.Store, o Options) (*Service, error) {
	s := &Service{cfg: cfg, st: st, policy: PolicyOf(cfg), now: o.Now,
		onEvent: o.OnEvent, log: o.Logger, metrics: o.Metrics, wake: make(chan struct{}, 1)}
	if s.now == nil {
		s.now = time.Now
	}
	s.chans.Store(channelsOf(cfg))
	if err := s.rebuild(); err != nil {
		return nil, err
	}
	s.metrics.listedFunc(s.count)
	return s, nil
}

// Reload makes cfg's channels apply from the next mining and prune pass
// on: which channels are mined, the addresses and domains never
// extracted (trap addresses, redacted domains), their retention. The
// intel block, the zones and the listing policy stay as at New (the
// daemon passes a cfg whose intel block is the running one); so does
// the allowlist, which the extractor reads from cfg.Intel.
func (s *Service) Reload(cfg *config.Config) {
	c := *cfg
	c.Intel = s.cfg.Intel
	s.chans.Store(channelsOf(&c))
	s.Wake()
}

// rebuild reads every indicator and keeps the listed ones.
func (s *Service) rebuild() error {
	now := s.now()
	m := map[Kind]map[string]Listing{}
	for _, k := range Kinds {
		m[k] = map[string]Listing{}
	}
	err := s.st.IntelForEach("", "", func(ind *store.IntelIndicator) error {
		if st := s.policy.Evaluate(ind, now); st.Listed {
			m[Kind(ind.Kind)][ind.Value] = s.listing(ind, st)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading indicators: %w", err)
	}
	s.mu.Lock()
	s.listed = m
	s.reindex()
	s.mu.Unlock()
	return nil
}

// reindex rebuilds net64; s.mu is held.
func (s *Service) reindex() {
	s.net64 = map[netip.Prefix]Listing{}
	for v, l := range s.listed[KindIP] {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is6() {
			continue
		}
		p, _ := a.Prefix(64)
		if old, ok := s.net64[p]; !ok || l.Until.After(old.Until) {
			s.net64[p] = l
		}
	}
}

// LookupIP returns the listing of an address: an IPv4 address exactly,
// an IPv6 address by its /64.
func (s *Service) LookupIP(a netip.Addr) (Listing, bool) {
	if a.Is4() {
		return s.Lookup(KindIP, a.String())
	}
	p, _ := a.Prefix(64)
	now := s.now()
	s.mu.RLock()
	l, ok := s.net64[p]
	s.mu.RUnlock()
	return l, ok && now.Before(l.Until)
}

func (s *Service) listing(ind *store.IntelIndicator, st Status) Listing {
	counts := map[string]int{}
	for _, h := range ind.Hits {
		if !h.Time.Before(st.Since) {
			counts[h.Source]++
		}
	}
	reason := "listed by xarfd:"
	for i, src := range sortedKeys(counts) {
		if i > 0 {
			reason += ","
		}
		reason += fmt.Sprintf(" %d %s", counts[src], src)
	}
	return Listing{Since: st.Since, Until: st.Until, Reason: reason + " hits, last " + ind.Hits[len(ind.Hits)-1].Time.UTC().Format(time.RFC3339)}
}

// Wake tells the worker that reports were committed; it never blocks.
// On a nil Service it does nothing.
func (s *Service) Wake() {
	if s == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// tick is how often listings are checked for expiry and the store pruned
// when nothing wakes the worker.
const tick = 5 * time.Second

// lateEvery spaces the passes that look behind the cursor for reports
// committed after newer ones (the first pass, at start, is one).
const lateEvery = time.Minute

// pruneEvery spaces the prune passes.
const pruneEvery = 10 * time.Minute

// Run mines until ctx ends: at start, when woken, and every tick.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	lastPrune, lastLate := time.Time{}, time.Time{}
	for {
		late := time.Since(lastLate) > lateEvery
		if late {
			lastLate = time.Now()
		}
		for {
			n, err := s.mine(late)
			if err != nil {
				if errors.Is(err, store.ErrClosed) {
					return nil
				}
				s.log.Error().Err(err).Msg("mining reports for indicators")
				break
			}
			if n < batch {
				break
			}
		}
		s.Expire()
		if time.Since(lastPrune) > pruneEvery {
			lastPrune = time.Now()
			if err := s.Prune(); err != nil && !errors.Is(err, store.ErrClosed) {
				s.log.Error().Err(err).Msg("pruning indicators")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-t.C:
		}
	}
}

// Mine extracts the indicators of up to one batch of new reports and
// records their hits; it returns how many reports it took.
func (s *Service) Mine() (int, error) { return s.mine(false) }

// MineLate also takes reports committed after newer ones (store.IntelLookback).
func (s *Service) MineLate() (int, error) { return s.mine(true) }

func (s *Service) mine(lookback bool) (int, error) {
	c := s.chans.Load() // one configuration for the batch
	if len(c.names) == 0 {
		return 0, nil
	}
	ids, err := s.st.IntelPending(c.names, batch, lookback)
	if err != nil {
		return 0, err
	}
	if len(ids) < batch {
		// Reports a reprocess made out of messages older than the cursor
		// (an id in both lists is mined once: IntelRecord skips the second).
		late, err := s.st.IntelLate(batch - len(ids))
		if err != nil {
			return 0, err
		}
		ids = append(ids, late...)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	updates := make([]store.IntelUpdate, 0, len(ids))
	for _, id := range ids {
		u, err := s.mineOne(c, id)
		if err != nil {
			return 0, err
		}
		updates = append(updates, u)
	}
	changed, err := s.st.IntelRecord(updates)
	if err != nil {
		return 0, fmt.Errorf("recording indicator hits: %w", err)
	}
	for _, u := range updates {
		for _, f := range u.Found {
			s.metrics.hit(f.Hit.Channel)
		}
	}
	s.apply(changed)
	return len(ids), nil
}

// mineOne reads one stored report and its evidence. A message without a
// report (quarantined) or gone meanwhile yields an empty update, so that
// it is marked done; so does a late report (IntelLate) of a channel that
// is not mined.
func (s *Service) mineOne(c *channels, id store.ID) (store.IntelUpdate, error) {
	u := store.IntelUpdate{Report: id}
	rep, err := s.st.GetReport(id)
	if errors.Is(err, store.ErrNotFound) {
		return u, nil
	}
	if err != nil {
		return u, fmt.Errorf("reading report %s: %w", id, err)
	}
	if !slices.Contains(c.names, rep.Channel) {
		return u, nil
	}
	x := c.x
	var doc struct {
		EvidenceSource string `json:"evidence_source"`
	}
	_ = json.Unmarshal(rep.XARF, &doc) // a document without it counts as a complaint
	in := Input{SourceIP: rep.SourceIP}
	if m, err := s.st.Message(id); err == nil {
		in.MailFrom, in.Rcpts = m.Envelope.MailFrom, m.Envelope.Rcpts
		if m.Withheld {
			in.MailFrom = ""
		}
	}
	if raw, err := s.st.Raw(id); err == nil {
		in.Raw = raw
	}
	at := store.IDTime(id)
	for _, ind := range x.Extract(rep.Channel, in) {
		u.Found = append(u.Found, store.IntelFound{Kind: string(ind.Kind), Value: ind.Value,
			Hit: store.IntelHit{Report: id, Channel: rep.Channel, Time: at, Source: doc.EvidenceSource, Where: ind.Where}})
	}
	return u, nil
}

// apply puts changed indicators into the listed set and announces the
// new listings.
func (s *Service) apply(changed []store.IntelIndicator) {
	now := s.now()
	var events []Event
	v6 := false
	s.mu.Lock()
	for i := range changed {
		ind := &changed[i]
		k := Kind(ind.Kind)
		st := s.policy.Evaluate(ind, now)
		prev, was := s.listed[k][ind.Value]
		switch {
		case st.Listed:
			s.listed[k][ind.Value] = s.listing(ind, st)
			if !was || !now.Before(prev.Until) {
				events = append(events, Event{Type: EventListed, Kind: k, Value: ind.Value, At: now, Until: st.Until})
			}
		case was:
			delete(s.listed[k], ind.Value)
		}
		if k == KindIP && strings.Contains(ind.Value, ":") {
			v6 = true
		}
	}
	if v6 {
		s.reindex()
	}
	s.mu.Unlock()
	s.emit(events)
}

func (s *Service) emit(events []Event) {
	for _, e := range events {
		s.log.Debug().Str("kind", string(e.Kind)).Str("value", e.Value).Str("event", e.Type).Msg("blocklist")
		if s.onEvent != nil {
			s.onEvent(e)
		}
	}
}

// Expire drops listings whose time is over and announces them.
func (s *Service) Expire() {
	now := s.now()
	var events []Event
	s.mu.Lock()
	for _, k := range Kinds {
		for v, l := range s.listed[k] {
			if !now.Before(l.Until) {
				delete(s.listed[k], v)
				events = append(events, Event{Type: EventExpired, Kind: k, Value: v, At: now})
			}
		}
	}
	if len(events) > 0 {
		s.reindex()
	}
	s.mu.Unlock()
	slices.SortFunc(events, func(a, b Event) int {
		if a.Kind != b.Kind {
			return slices.Index(Kinds, a.Kind) - slices.Index(Kinds, b.Kind)
		}
		return strings.Compare(a.Value, b.Value)
	})
	s.emit(events)
}

// Prune drops hits whose reports retention has deleted.
func (s *Service) Prune() error {
	now := s.now()
	cfg := s.chans.Load().cfg
	keep := func(ch string) time.Time {
		if c := cfg.Channel(ch); c != nil {
			return now.Add(-c.Retention.D())
		}
		return now.Add(-cfg.RetentionOrphaned.D())
	}
	n, err := s.st.IntelPrune(keep)
	if n > 0 {
		s.log.Info().Int("deleted", n).Msg("indicators pruned with their reports")
	}
	if err != nil {
		return err
	}
	return s.rebuild()
}

// Lookup returns the listing of kind/value when it is listed now.
func (s *Service) Lookup(k Kind, value string) (Listing, bool) {
	now := s.now()
	s.mu.RLock()
	l, ok := s.listed[k][value]
	s.mu.RUnlock()
	return l, ok && now.Before(l.Until)
}

// Listed returns the values of kind listed now, sorted.
func (s *Service) Listed(k Kind) []string {
	now := s.now()
	s.mu.RLock()
	out := make([]string, 0, len(s.listed[k]))
	for v, l := range s.listed[k] {
		if now.Before(l.Until) {
			out = append(out, v)
		}
	}
	s.mu.RUnlock()
	slices.Sort(out)
	return out
}

func (s *Service) count(k Kind) int {
	now := s.now()
	n := 0
	s.mu.RLock()
	for _, l := range s.listed[k] {
		if now.Before(l.Until) {
			n++
		}
	}
	s.mu.RUnlock()
	return n
}

// Get returns an indicator with its status now.
func (s *Service) Get(k Kind, value string) (*store.IntelIndicator, Status, error) {
	ind, err := s.st.IntelGet(string(k), value)
	if err != nil {
		return nil, Status{}, err
	}
	return ind, s.policy.Evaluate(ind, s.now()), nil
}

// Status evaluates an indicator now.
func (s *Service) Status(ind *store.IntelIndicator) Status { return s.policy.Evaluate(ind, s.now()) }

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.now() }

// Delist removes an indicator from the lists by hand; the reason is kept
// with it, and only hits after now list it again. In a cluster
// (SetReplicator) every node delists it, at the same time, through the
// stream (cluster.go); an error wrapping store.ErrCommit then means that
// no node did.
func (s *Service) Delist(k Kind, value, reason, by string) (*store.IntelIndicator, error) {
	if s.ops != nil {
		return s.delistEverywhere(k, value, reason, by)
	}
	return s.delist(k, value, store.IntelDelist{At: s.now(), Reason: reason, By: by})
}

func (s *Service) delist(k Kind, value string, d store.IntelDelist) (*store.IntelIndicator, error) {
	ind, err := s.st.IntelDelist(string(k), value, d)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	_, was := s.listed[k][value]
	delete(s.listed[k], value)
	s.reindex()
	s.mu.Unlock()
	if was {
		s.emit([]Event{{Type: EventDelisted, Kind: k, Value: value, At: d.At}})
	}
	return ind, nil
}

// Metrics returns the collectors the service counts in (nil = none).
func (s *Service) Metrics() *Metrics { return s.metrics }

// Extractor returns the service's extractor.
func (s *Service) Extractor() *Extractor { return s.chans.Load().x }
