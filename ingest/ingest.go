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
	"os"
	"strings"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/redact"
	"github.com/xarfd/xarfd/store"
)

// Delivery is the part of one message that goes to one channel: the
// channel and the recipients that routed to it. A message whose
// recipients span two channels is two deliveries, stored separately, so
// that one channel never sees the other's recipients.
type Delivery struct {
	Channel *config.Channel
	Rcpts   []string
}

// Result is what became of one delivery. It carries no address.
type Result struct {
	ID store.ID
	// Quarantined is set when the message was kept aside; Reason says why.
	Quarantined bool
	Reason      string
	// Redaction counts what was redacted (zero for other channels).
	Redaction redact.Summary
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
}

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

// Accept stores raw once per delivery, redacted as each channel requires,
// in one durable transaction, and returns one Result per delivery in
// order. env.Rcpts is ignored: each record gets its delivery's recipients.
// raw is not modified.
func (in *Ingester) Accept(env store.Envelope, deliveries []Delivery, raw []byte) ([]Result, error) {
	if len(deliveries) == 0 {
		return nil, ErrNoDelivery
	}
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = in.now().UTC()
	}
	msgs := make([]*store.Message, len(deliveries))
	raws := make([][]byte, len(deliveries))
	res := make([]Result, len(deliveries))
	for i, d := range deliveries {
		id, err := store.NewID()
		if err != nil {
			return nil, fmt.Errorf("making message id: %w", err)
		}
		m := &store.Message{ID: id, Channel: d.Channel.Name, Envelope: env, Size: len(raw), Status: store.StatusReceived}
		m.Envelope.Rcpts = append([]string(nil), d.Rcpts...)
		body := raw
		res[i].ID = id
		if r := in.redactors[d.Channel.Name]; r != nil {
			body = in.redact(r, d, m, raw, &res[i])
		}
		msgs[i], raws[i] = m, body
	}
	if err := in.store.PutMessages(msgs, raws); err != nil {
		return nil, fmt.Errorf("storing message: %w", err)
	}
	return res, nil
}

// redact rewrites the body and the record's recipients for a redacting
// channel and returns the body to store (nil when it must be withheld).
func (in *Ingester) redact(r *redact.Redactor, d Delivery, m *store.Message, raw []byte, res *Result) []byte {
	var addrs []string
	if d.Channel.Redact.Recipients {
		addrs = append(append(addrs, d.Rcpts...), redact.MessageRecipients(raw)...)
		for j, a := range m.Envelope.Rcpts {
			m.Envelope.Rcpts[j] = r.Pseudonym(a)
		}
	}
	out, sum, err := r.Apply(raw, addrs)
	if err != nil {
		// The error text never holds an address (redact's guarantee).
		m.Status, m.Reason, m.Withheld = store.StatusQuarantined, "redaction cannot be guaranteed: "+err.Error(), true
		m.Size = 0
		res.Quarantined, res.Reason = true, m.Reason
		return nil
	}
	m.Size = len(out)
	res.Redaction = sum
	return out
}
