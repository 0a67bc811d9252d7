// Package metrics holds xarfd's Prometheus collectors in one registry
// that the daemon creates once and hands to every package that counts
// something; /metrics serves it. Every label has a bounded set of values
// (reply codes, channel names from the configuration, fixed outcomes and
// forms): never an address, an IP or free text.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Outcomes of one message for one channel.
const (
	OutcomeReport     = "report"      // a XARF report was stored
	OutcomeQuarantine = "quarantined" // kept aside with a reason
	OutcomeStored     = "stored"      // stored, no report (yet)
	OutcomeError      = "error"       // not stored: our fault, 451
)

// Metrics is the set of collectors. A nil *Metrics is valid and counts
// nothing, so packages and tests need not build one.
type Metrics struct {
	Registry *prometheus.Registry

	smtpReplies   *prometheus.CounterVec
	messages      *prometheus.CounterVec
	reprocessed   *prometheus.CounterVec
	redactions    *prometheus.CounterVec
	commitLatency prometheus.Histogram
	txSeconds     prometheus.Histogram
	txOps         prometheus.Histogram
	deliveries    *prometheus.CounterVec
	sseDropped    prometheus.Counter
	sseRefused    *prometheus.CounterVec
	damaged       prometheus.Counter
	claims        *prometheus.CounterVec
}

// New registers every collector in a fresh registry, with the Go runtime
// and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		smtpReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_smtp_replies_total",
			Help: "Final SMTP replies to transactions and refused recipients, by reply code.",
		}, []string{"code"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_messages_total",
			Help: "Messages ingested per channel, by outcome (report, quarantined, stored, error).",
		}, []string{"channel", "outcome"}),
		reprocessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_reprocessed_total",
			Help: "Quarantined messages run through their channel again, per channel, by outcome (report, quarantined).",
		}, []string{"channel", "outcome"}),
		redactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_redactions_total",
			Help: "Occurrences of recipient data replaced, by channel and encoded form.",
		}, []string{"channel", "form"}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xarfd_store_commit_seconds",
			Help:    "Time from handing a message to the store to its durable commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		txSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xarfd_store_transaction_seconds",
			Help: "Duration of each store transaction: bbolt's work and its two fsyncs, which bound the rate of one client.",
			// 0.1 ms to 3.3 s.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		txOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xarfd_store_transaction_operations",
			Help:    "Operations committed together in one store transaction (group commit): deliveries, outbox changes, API writes.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 to 512
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_deliveries_total",
			Help: "Outbound report delivery attempts, by result (sent, deferred, failed, dry-run).",
		}, []string{"result"}),
		sseDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xarfd_stream_dropped_total",
			Help: "Live-stream consumers dropped because they did not keep up.",
		}),
		sseRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_stream_refused_total",
			Help: "Live streams refused (503) because the most allowed were open, by interface (api: /api/v1/stream and /api/v1/stream/cases; console: the reports pages' live rows).",
		}, []string{"interface"}),
		damaged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xarfd_store_damaged_records_total",
			Help: "Reads that met a stored record whose checksum does not hold (the record is not served; restore from backup).",
		}),
		claims: newClaims(),
	}
	// Both series exist from the start, at 0: an alert on their rate
	// needs a series before the first refusal.
	for _, i := range []string{StreamAPI, StreamConsole} {
		m.sseRefused.WithLabelValues(i)
	}
	m.Registry.MustRegister(m.smtpReplies, m.messages, m.reprocessed, m.redactions, m.commitLatency, m.txSeconds, m.txOps, m.deliveries, m.sseDropped, m.sseRefused, m.damaged, m.claims,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SMTPReply counts one reply code.
func (m *Metrics) SMTPReply(code int) {
	if m == nil {
		return
	}
	m.smtpReplies.WithLabelValues(strconv.Itoa(code)).Inc()
}

// Message counts one message of a channel with its outcome.
func (m *Metrics) Message(channel, outcome string) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(channel, outcome).Inc()
}

// Reprocessed counts one quarantined message of a channel run through
// it again, with its outcome (OutcomeReport or OutcomeQuarantine). It is
// not a delivery: Message counted that once, when it arrived.
func (m *Metrics) Reprocessed(channel, outcome string) {
	if m == nil {
		return
	}
	m.reprocessed.WithLabelValues(channel, outcome).Inc()
}

// Redactions adds n replaced occurrences of form in channel.
func (m *Metrics) Redactions(channel, form string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.redactions.WithLabelValues(channel, form).Add(float64(n))
}

// CommitLatency observes one store commit, in seconds.
func (m *Metrics) CommitLatency(seconds float64) {
	if m == nil {
		return
	}
	m.commitLatency.Observe(seconds)
}

// StoreTransaction observes one durable store transaction: how many
// operations it held and how long it took. It fits store.Options.OnCommit.
func (m *Metrics) StoreTransaction(ops int, took time.Duration) {
	if m == nil {
		return
	}
	m.txSeconds.Observe(took.Seconds())
	m.txOps.Observe(float64(ops))
}

// Delivery counts one delivery attempt result.
func (m *Metrics) Delivery(result string) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(result).Inc()
}

// StreamDropped counts one dropped live-stream consumer.
func (m *Metrics) StreamDropped() {
	if m == nil {
		return
	}
	m.sseDropped.Inc()
}

// Interfaces whose live streams are bounded, the values of
// xarfd_stream_refused_total's label: the API and the console each keep
// their own limit, and an operator needs to know which one was reached.
const (
	StreamAPI     = "api"
	StreamConsole = "console"
)

// StreamRefused counts one live stream of iface (StreamAPI or
// StreamConsole) refused for the limit on open streams.
func (m *Metrics) StreamRefused(iface string) {
	if m == nil {
		return
	}
	m.sseRefused.WithLabelValues(iface).Inc()
}

// StoreDamaged counts one read that met a damaged record. The id goes
// to the log, never to a label.
func (m *Metrics) StoreDamaged() {
	if m == nil {
		return
	}
	m.damaged.Inc()
}

// Gauge registers a gauge whose value is read at scrape time (for
// example the outbox depth, read from the store).
func (m *Metrics) Gauge(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}
