package cases

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// By names who made a change that xarfd made on its own.
const By = "xarfd"

// Options are the optional parts of a Manager.
type Options struct {
	Logger zerolog.Logger
	// Mailer sends notifications; nil keeps them in dry run whatever the
	// configuration says (and says so on the case).
	Mailer Mailer
	// HTTPClient makes webhook calls and HTTP lookups (its Timeout is
	// replaced by the configured ones).
	HTTPClient *http.Client
	// OnChange is told about every case that changed (the SSE stream);
	// it must not block.
	OnChange func(*store.Case)
	// Poll is the longest the loop sleeps without a Wake (default 5 s):
	// min_interval expiries and webhook retries are found this often.
	Poll time.Duration
	// Now is the clock (tests).
	Now func() time.Time
	// Claims makes each automatic notification sent once across a
	// cluster's nodes (package cluster, kind notification); nil on a
	// single node.
	Claims reporter.Claims
	// RestrictClaims does the same for restrict and unrestrict webhook
	// calls (kind restrict).
	RestrictClaims reporter.Claims
}

// Manager turns stored reports about own networks into cases and works
// the cases' notifications and webhook calls. It reads reports after
// their commit from a cursor kept in the store, so nothing on the path
// of the SMTP 250 waits for it, and a crash resumes where it stopped.
type Manager struct {
	st   *store.Store
	opt  Options
	log  zerolog.Logger
	set  atomic.Pointer[settings]
	wake chan struct{}
	// stepMu makes Step run on one goroutine at a time (Run's, a test's,
	// or ApplyOp's catching up before an action from another node).
	stepMu sync.Mutex
	// backAt is when Step last looked back behind the cursor.
	backAt time.Time
	// ops carries the operators' actions to every node of a cluster, as
	// node; nil on a single node. Set before serving (SetReplicator).
	ops  ops.Replicator
	node string
}

// settings is what the configuration decides; Reload swaps it whole.
type settings struct {
	cfg      *config.Config
	dir      *Directory
	tmpl     *notifyTemplate
	secret   []byte
	channels map[string]bool // channels that use own
}

// New prepares a Manager (it loads the subscriber files).
func New(cfg *config.Config, st *store.Store, opt Options) (*Manager, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Poll <= 0 {
		opt.Poll = 5 * time.Second
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = &http.Client{}
	}
	m := &Manager{st: st, opt: opt, log: opt.Logger, wake: make(chan struct{}, 1)}
	if err := m.Reload(cfg); err != nil {
		return nil, err
	}
	return m, nil
}

// Reload applies cfg's subscribers block and channels; the files are read
// again. On error the running settings stay.
func (m *Manager) Reload(cfg *config.Config) error {
	s := &cfg.Subscribers
	lookup, err := NewHTTPLookup(s.LookupURL, s.LookupTimeout.D(), s.LookupCacheTTL.D(), m.opt.HTTPClient)
	if err != nil {
		return err
	}
	dir, err := NewDirectory(s.StaticFile, s.AssignmentsFile, lookup)
	if err != nil {
		return fmt.Errorf("subscribers: %w", err)
	}
	for file, st := range dir.Stats() {
		m.logStats(file, st, 0)
	}
	tmpl, err := loadTemplate(s.Notify.TemplateFile)
	if err != nil {
		return err
	}
	var secret []byte
	if s.Restrict.Webhook.SecretFile != "" && s.Restrict.Enabled {
		if secret, err = readSecret(s.Restrict.Webhook.SecretFile); err != nil {
			return err
		}
	}
	set := &settings{cfg: cfg, dir: dir, tmpl: tmpl, secret: secret, channels: map[string]bool{}}
	for i := range cfg.Channels {
		if cfg.Channels[i].Has(config.UseOwn) {
			set.channels[cfg.Channels[i].Name] = true
		}
	}
	m.set.Store(set)
	m.Wake()
	return nil
}

func (m *Manager) s() *settings { return m.set.Load() }

func (m *Manager) logStats(file string, st LoadStats, took time.Duration) {
	ev := m.log.Info()
	if st.Bad > 0 || st.Overlaps > 0 {
		ev = m.log.Warn()
	}
	arr := zerolog.Arr()
	for _, e := range st.Errors {
		arr.Str(e.Error())
	}
	ev.Str("file", file).Int("rows", st.Rows).Int("malformed", st.Bad).Int("overlaps", st.Overlaps).
		Array("errors", arr).Dur("took", took).Msg("subscriber file loaded")
}

// Wake makes the loop look for new reports now. It never blocks.
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// batchSize is how many reports one transaction adds to cases.
const batchSize = 256

// lookback is how far before the cursor each pass looks again: ids are
// taken before their commit, so a report may commit a little after one
// with a later id; handled reports are skipped by id.
const lookback = time.Minute

// lookbackEvery is how often a pass looks back: every pass did, and on
// the report path a pass runs after each stored report, so each one read
// the last minute of every channel's reports again (4 ms of CPU per
// message at 300 msgs/s). Twice per lookback window still sees a report
// whose commit came up to half a window after its id.
const lookbackEvery = lookback / 2

// Run processes reports and due case work until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-t.C:
		}
		if r, err := m.s().dir.Refresh(); err != nil {
			m.log.Error().Err(err).Msg("reading subscriber files: the loaded contents stay")
		} else {
			for _, x := range r {
				m.logStats(x.File, x.Stats, x.Took)
			}
		}
		for {
			more, err := m.Step(ctx)
			if err != nil {
				m.log.Error().Err(err).Msg("adding reports to cases; retrying")
				break
			}
			if !more || ctx.Err() != nil {
				break
			}
		}
		if err := m.Due(ctx); err != nil {
			m.log.Error().Err(err).Msg("case actions")
		}
		t.Reset(m.opt.Poll)
	}
}

// idAt is the smallest UUIDv7 of the millisecond t.
func idAt(t time.Time) store.ID {
	var id store.ID
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixMilli()))
	copy(id[:6], b[2:])
	return id
}

// own reports whether ip is in own_networks.
func own(ip netip.Addr, nets []config.Prefix) bool {
	ip = ip.Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// facts are what a case needs of a report's XARF document.
type facts struct {
	Timestamp      string `json:"timestamp"`
	SourcePort     int    `json:"source_port"`
	EvidenceSource string `json:"evidence_source"`
}

type pending struct {
	rep   store.Report
	at    time.Time
	port  int
	src   string
	match *Match
}

// Step adds one batch of new reports to cases; more is true when there
// may be another batch waiting.
func (m *Manager) Step(ctx context.Context) (more bool, err error) {
	m.stepMu.Lock()
	defer m.stepMu.Unlock()
	set := m.s()
	if len(set.channels) == 0 {
		// No channel uses own: nothing to read, nothing to commit (the
		// wake after every stored report must cost nothing then).
		return false, nil
	}
	cursor, err := m.st.CasesCursor()
	if err != nil {
		return false, err
	}
	from := cursor
	if now := m.opt.Now(); cursor != (store.ID{}) && now.Sub(m.backAt) >= lookbackEvery {
		from = idAt(store.IDTime(cursor).Add(-lookback))
		m.backAt = now
	}
	keep := func(r *store.Report) bool {
		return set.channels[r.Channel] && r.SourceIP.IsValid() && own(r.SourceIP, set.cfg.OwnNetworks)
	}
	reps, last, err := m.st.ScanReports(from, batchSize, keep)
	if err != nil {
		return false, fmt.Errorf("reading new reports: %w", err)
	}
	scanned := len(reps)
	late, lateIDs, err := m.lateReports(reps, keep)
	if err != nil {
		return false, err
	}
	reps = append(reps, late...)
	if string(last[:]) < string(cursor[:]) {
		last = cursor
	}
	var work []pending
	for _, r := range reps {
		var f facts
		_ = json.Unmarshal(r.XARF, &f) // a document without them counts at arrival
		p := pending{rep: r, at: store.IDTime(r.ID), port: f.SourcePort, src: f.EvidenceSource}
		if t, err := time.Parse(time.RFC3339Nano, f.Timestamp); err == nil {
			p.at = t.UTC()
		}
		p.match, err = set.dir.Find(ctx, r.SourceIP, p.port, p.at)
		if err != nil {
			// The operator's service is down: try this report again
			// later rather than file it under its address.
			return false, fmt.Errorf("finding the subscriber of %s: %w", r.SourceIP, err)
		}
		p.rep.XARF = nil
		work = append(work, p)
	}
	now := m.opt.Now().UTC()
	var changed []*store.Case
	err = m.st.UpdateCases(last, func(tx *store.CaseTx) error {
		changed = changed[:0]
		touched := map[store.ID]*store.Case{}
		for i := range work {
			cs, err := addReport(tx, &work[i], now)
			if err != nil {
				return err
			}
			touched[cs.ID] = cs
		}
		for _, cs := range touched {
			changed = append(changed, cs)
		}
		return tx.DropLate(lateIDs)
	})
	if err != nil {
		return false, fmt.Errorf("storing cases: %w", err)
	}
	for _, cs := range changed {
		m.changed(cs)
	}
	return scanned == batchSize || len(lateIDs) == batchSize, nil
}

func (m *Manager) changed(cs *store.Case) {
	if m.opt.OnChange != nil {
		m.opt.OnChange(cs)
	}
}

// caseKey is the key reports are grouped by: the subscriber when the
// lookup named one, else the address.
func caseKey(p *pending) string {
	if p.match.Found() {
		return "subscriber:" + p.match.ID
	}
	return "ip:" + p.rep.SourceIP.Unmap().String()
}

func addReport(tx *store.CaseTx, p *pending, now time.Time) (*store.Case, error) {
	key := caseKey(p)
	cs, err := tx.Open(key)
	if err != nil {
		return nil, err
	}
	ip := p.rep.SourceIP.Unmap()
	if cs == nil {
		id, err := store.NewID()
		if err != nil {
			return nil, err
		}
		cs = &store.Case{ID: id, Key: key, State: store.CaseOpen, FirstSeen: p.at,
			History: []store.CaseEvent{{At: now, To: store.CaseOpen, By: By,
				Reason: fmt.Sprintf("report %s about %s", p.rep.ID, ip)}}}
	}
	switch m := p.match; {
	case m.Found():
		cs.SubscriberID, cs.Email, cs.Name, cs.MatchSource = m.ID, m.Email, m.Name, m.Source
	case m != nil && m.Ambiguous:
		cs.Ambiguous, cs.Note, cs.MatchSource = true, m.Note, m.Source
		for _, c := range m.Candidates {
			cc := store.CaseCandidate{SubscriberID: c.ID, Email: c.Email}
			if !slices.Contains(cs.Candidates, cc) {
				cs.Candidates = append(cs.Candidates, cc)
			}
		}
	default:
		if cs.Note == "" {
			cs.Note = fmt.Sprintf("no subscriber is known for %s at %s", ip, p.at.Format(time.RFC3339))
		}
	}
	if !slices.Contains(cs.IPs, ip) {
		cs.IPs = append(cs.IPs, ip)
	}
	if p.src == "spamtrap" {
		cs.TrapHits++
	} else {
		cs.Complaints++
	}
	if p.at.Before(cs.FirstSeen) || cs.FirstSeen.IsZero() {
		cs.FirstSeen = p.at
	}
	if p.at.After(cs.LastSeen) {
		cs.LastSeen = p.at
	}
	cs.Reports = append(cs.Reports, store.CaseReport{ID: p.rep.ID, Channel: p.rep.Channel, At: p.at, IP: ip, Port: p.port, EvidenceSource: p.src})
	if n := len(cs.Reports) - store.MaxCaseReports; n > 0 {
		cs.Reports = slices.Delete(cs.Reports, 0, n)
	}
	cs.Updated = now
	if err := tx.Put(cs); err != nil {
		return nil, err
	}
	return cs, tx.Handled(p.rep.ID, cs.ID)
}

// transition moves cs to state, recording who and why.
func transition(cs *store.Case, to, by, reason string, now time.Time) {
	if cs.State == to {
		return
	}
	cs.History = append(cs.History, store.CaseEvent{At: now, From: cs.State, To: to, By: by, Reason: reason})
	cs.State = to
	cs.Updated = now
}

// ErrConflict is an action the case's state does not allow.
var ErrConflict = store.ErrConflict
