// Package ingest is the one way a message enters xarfd: smtpd and the
// HTTP API both hand it (channel, envelope, bytes), and it decides what
// is stored.
//
// For each channel the message is delivered to:
//
//  1. a redacting channel's redactor rewrites every form of every
//     recipient address (the envelope recipients of that channel, the
//     addresses the message names as recipients, and the configured ones)
//     and the envelope recipients are replaced by their pseudonyms: the
//     original bytes never leave this function;
//  2. the record (envelope, channel, status) and the bytes are stored in
//     one durable transaction with the other channels' records.
//
// A message whose redaction cannot be guaranteed is stored quarantined
// with its envelope and the reason but without its body: privacy wins over
// keeping evidence. ARF parsing and XARF conversion slot in here without
// smtpd or the API changing.
package ingest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/redact"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/xarf"
)

// Delivery is the part of one message that goes to one channel: the
// channel and the recipients that routed to it. A message whose
// recipients span two channels is two deliveries, stored separately, so
// that one channel never sees the other's recipients.
type Delivery struct {
	Channel *config.Channel
	Rcpts   []string
	// stored: the bytes are a stored message's, redacted already where
	// the channel redacted them then (Reprocess); they are not redacted
	// again, which would replace pseudonyms with pseudonyms of them.
	stored bool
}

// Result is what became of one delivery. It carries no address.
type Result struct {
	ID store.ID
	// Quarantined is set when the message was kept aside; Reason says why.
	Quarantined bool
	Reason      string
	// Report is set when a XARF report was stored (same id).
	Report bool
	// Redaction counts what was redacted (zero for other channels).
	Redaction redact.Summary
	// retract is set for a not-spam report: Accept withdraws the
	// complaint it retracts before storing it.
	retract *store.Retraction
}

// Options are the optional parts of an Ingester.
type Options struct {
	// Metrics counts messages, outcomes and redactions; nil counts nothing.
	Metrics *metrics.Metrics
	// OnReport is called once for every report after the transaction
	// holding it is durable (the SSE stream hangs here). It runs on the
	// ingesting goroutine and must not block.
	OnReport func(*store.Report)
	// Validator checks XARF documents submitted over HTTP.
	Validator Validator
	// Replicator, when set (cluster mode), takes the place of the local
	// store's commit: see Replicator.
	Replicator Replicator
}

// Replicator makes entries durable cluster-wide (package cluster): it
// returns once they are on a quorum of the replicated stream, having
// stored them in the local store too, and says which of them it stored
// now (the others had reached this node through the stream already,
// and their OnReport was called then). An error means nothing may be
// acknowledged; it wraps store.ErrCommit, or ErrTooLarge.
type Replicator interface {
	Commit(entries []store.Entry) (stored []bool, err error)
}

// ErrTooLarge is wrapped by a Replicator's error when the entries can
// never be committed as they are: their record exceeds the largest
// message the cluster's servers take. Unlike store.ErrCommit it is
// permanent (552 5.3.4): a retry would fail alike for ever.
var ErrTooLarge = errors.New("ingest: the message is too large for the cluster's records")

// Ingester stores messages. It is safe for concurrent use.
type Ingester struct {
	cfg       *config.Config
	store     *store.Store
	opt       Options
	redactors map[string]*redact.Redactor // by channel name; nil = no redaction
	now       func() time.Time
}

// New returns an Ingester writing to st, with the redaction policy of
// every channel of cfg ready (HMAC keys are read here, once).
func New(cfg *config.Config, st *store.Store, opt Options) (*Ingester, error) {
	in := &Ingester{cfg: cfg, store: st, opt: opt, redactors: map[string]*redact.Redactor{}, now: time.Now}
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		if !ch.Redact.Enabled() {
			continue
		}
		r, err := newRedactor(cfg.Hostname, &ch.Redact)
		if err != nil {
			return nil, fmt.Errorf("channel %s: %w", ch.Name, err)
		}
		in.redactors[ch.Name] = r
	}
	return in, nil
}

func newRedactor(host string, rc *config.Redact) (*redact.Redactor, error) {
	mode, err := redact.ParseMode(rc.Mode)
	if err != nil {
		return nil, err
	}
	p := redact.Policy{
		Hostname:  host,
		Mode:      mode,
		Addresses: rc.Addresses,
		Domains:   rc.Domains,
		LocalPart: rc.LocalParts,
	}
	if mode == redact.ModeHMAC {
		key, err := os.ReadFile(rc.HMACKeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading redact.hmac_key_file: %w", err)
		}
		p.HMACKey = []byte(strings.TrimSpace(string(key)))
	}
	return redact.New(p)
}

// ErrNoDelivery is returned when Accept is called without a delivery.
var ErrNoDelivery = errors.New("ingest: no delivery")

// Accept runs raw through the pipeline once per delivery (classify,
// origin, redact, convert) and stores every record, report and outbox
// entry in one durable transaction, then returns one Result per delivery
// in order. env.Rcpts is ignored: each record gets its delivery's
// recipients. raw is neither modified nor retained after Accept returns
// (smtpd recycles its buffer). An error means nothing was stored.
func (in *Ingester) Accept(env store.Envelope, deliveries []Delivery, raw []byte) ([]Result, error) {
	if len(deliveries) == 0 {
		return nil, ErrNoDelivery
	}
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = in.now().UTC()
	}
	entries := make([]store.Entry, len(deliveries))
	res := make([]Result, len(deliveries))
	for i, d := range deliveries {
		id, err := store.NewID()
		if err != nil {
			return nil, fmt.Errorf("making message id: %w", err)
		}
		m := &store.Message{ID: id, Channel: d.Channel.Name, Envelope: env, Size: len(raw), Status: store.StatusReceived}
		m.Envelope.Rcpts = append([]string(nil), d.Rcpts...)
		res[i].ID = id
		entries[i] = in.process(d, m, raw, &res[i])
	}
	if err := in.retract(entries, res); err != nil {
		for _, d := range deliveries {
			in.opt.Metrics.Message(d.Channel.Name, metrics.OutcomeError)
		}
		return nil, err
	}
	start := time.Now()
	stored, err := in.commit(entries)
	if err != nil {
		for _, d := range deliveries {
			in.opt.Metrics.Message(d.Channel.Name, metrics.OutcomeError)
		}
		return nil, fmt.Errorf("storing message: %w", err)
	}
	in.opt.Metrics.CommitLatency(time.Since(start).Seconds())
	for i, e := range entries {
		in.count(deliveries[i].Channel.Name, &res[i])
		if e.Report != nil && stored[i] && in.opt.OnReport != nil {
			in.opt.OnReport(e.Report)
		}
	}
	return res, nil
}

// commit makes entries durable: in the local store, or on the cluster's
// quorum when there is a Replicator. stored says which of them this call
// stored (all of them, without a Replicator).
func (in *Ingester) commit(entries []store.Entry) ([]bool, error) {
	if r := in.opt.Replicator; r != nil {
		return r.Commit(entries)
	}
	if err := in.store.Put(entries); err != nil {
		return nil, err
	}
	stored := make([]bool, len(entries))
	for i := range stored {
		stored[i] = true
	}
	return stored, nil
}

// Convert runs raw through the pipeline for one delivery exactly as
// Accept does, without storing anything (xarfd parse). The entry holds
// what would be stored: the (redacted) bytes, the record and the report.
func (in *Ingester) Convert(env store.Envelope, d Delivery, raw []byte) (store.Entry, Result, error) {
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = in.now().UTC()
	}
	id, err := store.NewID()
	if err != nil {
		return store.Entry{}, Result{}, fmt.Errorf("making message id: %w", err)
	}
	m := &store.Message{ID: id, Channel: d.Channel.Name, Envelope: env, Size: len(raw), Status: store.StatusReceived}
	m.Envelope.Rcpts = append([]string(nil), d.Rcpts...)
	res := Result{ID: id}
	e := in.process(d, m, raw, &res)
	return e, res, nil
}

func (in *Ingester) count(channel string, r *Result) {
	switch {
	case r.Quarantined:
		in.opt.Metrics.Message(channel, metrics.OutcomeQuarantine)
	case r.Report:
		in.opt.Metrics.Message(channel, metrics.OutcomeReport)
	default:
		in.opt.Metrics.Message(channel, metrics.OutcomeStored)
	}
	r.Redaction.Each(func(f redact.Form, n int) {
		in.opt.Metrics.Redactions(channel, f.String(), n)
	})
}

// process turns one delivery into what is stored for it. It never fails:
// whatever cannot be turned into a report is quarantined with the reason.
func (in *Ingester) process(d Delivery, m *store.Message, raw []byte, res *Result) (e store.Entry) {
	e = store.Entry{Message: m}
	// unredacted is what a panic before redaction stores. It is the only
	// reference to raw here after redaction and is cleared then: for the
	// last delivery of a message nothing else holds the original, and it
	// can be collected while the redacted copy is being stored.
	unredacted := raw
	defer func() {
		// A converter bug must not lose the message nor kill the session.
		if p := recover(); p != nil {
			in.quarantine(m, res, fmt.Sprintf("internal error while converting (%v)", p))
			if e.Raw == nil && !m.Withheld {
				e.Raw = unredacted
			}
			e.Report, e.Outbox = nil, nil
		}
	}()
	ch := d.Channel
	var parsed *arf.Report
	if ch.Kind == config.KindARF {
		// Parse the message as received first: the addresses the report
		// names (Original-Rcpt-To, JMRP's recipient header, the embedded
		// message's recipients) are what redaction must find. Without
		// redaction this is the only parse: classification, origin and
		// conversion share it.
		parsed, _ = arf.Parse(raw)
	}
	body := raw
	if r := in.redactors[ch.Name]; r != nil && !d.stored {
		var named []string
		if parsed != nil && ch.Redact.Recipients {
			named = parsed.RecipientAddresses()
		}
		// The parse of the unredacted bytes may hold a copy of the
		// message and refers to the original; it is dropped before
		// redaction makes more, and its text fields must not reach the
		// report anyway.
		parsed = nil
		if body = in.redact(r, d, m, raw, named, res); body == nil {
			return e // withheld and quarantined
		}
		// From here a panic stores the redacted bytes, never the original.
		e.Raw, unredacted = body, nil
		if ch.Kind == config.KindARF {
			parsed, _ = arf.Parse(body) // text fields come from the redacted bytes
		}
	}
	e.Raw = body
	rep, err := in.convert(ch, m, body, parsed)
	if err != nil {
		in.quarantine(m, res, err.Error())
		res.retract = retraction(ch, m, parsed)
		return e
	}
	// MarshalJSON directly: through json.Marshal its output would be
	// scanned and compacted once more, base64 evidence and all.
	doc, err := rep.MarshalJSON()
	if err != nil {
		in.quarantine(m, res, "cannot encode report: "+err.Error())
		return e
	}
	m.Status = store.StatusConverted
	e.Report = &store.Report{ID: m.ID, Channel: ch.Name, Via: m.Envelope.Via, XARF: doc}
	if a, err := netip.ParseAddr(rep.SourceIdentifier); err == nil {
		e.Report.SourceIP = a.Unmap()
	}
	if ch.Has(config.UseReport) {
		e.Outbox = &store.OutboxEntry{ID: m.ID, Channel: ch.Name, Status: store.OutboxPending, Created: m.Envelope.ReceivedAt}
		if why := staleReason(parsed, m.Envelope.ReceivedAt, in.cfg.Reporter.MaxAge.D()); why != "" {
			withholdStale(e.Outbox, why)
			e.Outbox.SourceIP = e.Report.SourceIP
		}
	}
	res.Report = true
	return e
}

func (in *Ingester) quarantine(m *store.Message, res *Result, reason string) {
	m.Status, m.Reason = store.StatusQuarantined, reason
	res.Quarantined, res.Reason = true, reason
}

// convert builds the XARF report of one delivery from the bytes that are
// stored (redacted where the channel redacts).
func (in *Ingester) convert(ch *config.Channel, m *store.Message, body []byte, parsed *arf.Report) (*xarf.Report, error) {
	input := xarf.Input{
		ReportID:           m.ID.String(),
		Received:           m.Envelope.ReceivedAt,
		Reporter:           in.reporter(ch),
		Sender:             xarf.Contact{Org: in.cfg.Sender.Org, Contact: in.cfg.Sender.Contact, Domain: in.cfg.Sender.Domain},
		RecipientsRedacted: ch.Redact.Recipients,
		ListRedacted:       ch.Redact.Enabled(),
		Pseudonyms:         ch.Redact.Enabled() && ch.Redact.Mode == config.RedactHMAC,
		Message:            body,
		Trusted:            trustedFunc(ch),
	}
	if m.Envelope.Via == "smtp" && m.Envelope.PeerIP.IsValid() {
		input.Envelope = &xarf.Envelope{
			Peer:     netip.AddrPortFrom(m.Envelope.PeerIP, m.Envelope.PeerPort),
			MailFrom: m.Envelope.MailFrom,
		}
	}
	if ch.Kind == config.KindTrap {
		// A listed address or domain is redacted even where recipients
		// as such are not: it must not come back as smtp_to.
		if !ch.Redact.Recipients && len(m.Envelope.Rcpts) > 0 && !isRedacted(m.Envelope.Rcpts[0], nil, &ch.Redact) {
			input.Recipient = m.Envelope.Rcpts[0]
		}
		return xarf.FromTrap(input)
	}
	if !ch.Redact.Recipients && parsed != nil && len(parsed.OriginalRcptTo) > 0 {
		input.Recipient = parsed.OriginalRcptTo[0]
	}
	return xarf.FromARF(parsed, input)
}

// reporter is the channel's XARF reporter; a channel without one reports
// as this installation.
func (in *Ingester) reporter(ch *config.Channel) xarf.Contact {
	r := ch.ReporterOrg
	if r.Org == "" || r.Contact == "" || r.Domain == "" {
		r = in.cfg.Sender
	}
	return xarf.Contact{Org: r.Org, Contact: r.Contact, Domain: r.Domain}
}

func trustedFunc(ch *config.Channel) func(netip.Addr) bool {
	if len(ch.TrustedRelays) == 0 {
		return nil
	}
	return func(a netip.Addr) bool {
		for _, p := range ch.TrustedRelays {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}

// redact rewrites the body and the record's recipients for a redacting
// channel and returns the body to store (nil when it must be withheld).
// named are the recipient addresses the ARF report names (nil for other
// messages).
func (in *Ingester) redact(r *redact.Redactor, d Delivery, m *store.Message, raw []byte, named []string, res *Result) []byte {
	var addrs []string
	if d.Channel.Redact.Recipients {
		addrs = append(append(addrs, d.Rcpts...), redact.MessageRecipients(raw)...)
		addrs = append(addrs, named...)
		for j, a := range m.Envelope.Rcpts {
			m.Envelope.Rcpts[j] = r.Pseudonym(a)
		}
	}
	if from := m.Envelope.MailFrom; from != "" && (isRedacted(from, addrs, &d.Channel.Redact) ||
		d.Channel.Redact.Recipients && atRecipientDomain(from, d)) {
		// A spammer may forge the trap address, or another address at the
		// trap's domain, as the sender; the stored envelope and the
		// report's smtp_from must not reveal it either.
		m.Envelope.MailFrom = r.Pseudonym(from)
	}
	out, sum, err := r.Apply(raw, addrs)
	if err != nil {
		// The error text never holds an address (redact's guarantee).
		in.quarantine(m, res, "redaction cannot be guaranteed: "+err.Error())
		m.Withheld, m.Size = true, 0
		return nil
	}
	m.Size = len(out)
	res.Redaction = sum
	return out
}

// atRecipientDomain reports whether addr lies at the domain of one of the
// delivery's recipients or of the channel's own addresses ("x@dom" or
// "*@dom"): for a trap, that domain is itself what must stay secret.
func atRecipientDomain(addr string, d Delivery) bool {
	_, domain, ok := strings.Cut(strings.Trim(addr, "<> "), "@")
	if !ok || domain == "" {
		return false
	}
	for _, list := range [][]string{d.Rcpts, d.Channel.Addresses} {
		for _, x := range list {
			if _, dd, ok := strings.Cut(x, "@"); ok && strings.EqualFold(dd, domain) {
				return true
			}
		}
	}
	return false
}

// isRedacted reports whether addr is one of addrs or of the channel's
// configured addresses, or lies at one of its configured domains.
func isRedacted(addr string, addrs []string, rc *config.Redact) bool {
	a := strings.ToLower(strings.Trim(addr, "<> "))
	for _, list := range [][]string{addrs, rc.Addresses} {
		for _, x := range list {
			if strings.EqualFold(strings.Trim(x, "<> "), a) {
				return true
			}
		}
	}
	_, domain, ok := strings.Cut(a, "@")
	if !ok {
		return false
	}
	for _, d := range rc.Domains {
		d = strings.ToLower(d)
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}
