package cluster

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of applying one entry of the stream to the local store.
const (
	resultStored  = "stored"  // new on this node: stored now
	resultHeld    = "held"    // held already (its own, or redelivered)
	resultDamaged = "damaged" // a record that does not decode: skipped
	resultSkipped = "skipped" // an operator's action that does not apply here
)

// Metrics are the cluster's collectors. A nil *Metrics counts nothing.
type Metrics struct {
	publish  prometheus.Histogram
	failures prometheus.Counter
	tooLarge prometheus.Counter
	apply    *prometheus.CounterVec
	ops      *prometheus.CounterVec
	lag      prometheus.Gauge
	healthy  prometheus.Gauge
	current  prometheus.Gauge
}

// NewMetrics registers the cluster's collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xarfd_cluster_publish_seconds",
			Help:    "Time from publishing a record to the stream's acknowledgement (a quorum of replicas has it).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xarfd_cluster_publish_failures_total",
			Help: "Records the stream did not acknowledge in time (each was answered 451 or 503).",
		}),
		tooLarge: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xarfd_cluster_records_too_large_total",
			Help: "Messages refused with 552 5.3.4 because their record exceeded the NATS servers' max_payload.",
		}),
		apply: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_cluster_records_applied_total",
			Help: "Entries of stream records applied to the local store, by result (stored, held, damaged).",
		}, []string{"result"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_cluster_ops_applied_total",
			Help: "Operators' actions of the stream applied on this node, by result (stored: applied now, skipped: it does not apply here).",
		}, []string{"result"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xarfd_cluster_consumer_lag",
			Help: "Records of the stream this node has not applied yet.",
		}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xarfd_cluster_healthy",
			Help: "1 while connected to NATS with a known stream leader, else 0.",
		}),
		current: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xarfd_cluster_stream_replicas_current",
			Help: "Replicas of the stream that are current (the leader and the followers caught up with it); below cluster.replicas, losing one more may stall or stop acceptance.",
		}),
	}
	for _, r := range []string{resultStored, resultHeld, resultDamaged} {
		m.apply.WithLabelValues(r)
	}
	for _, r := range []string{resultStored, resultSkipped} {
		m.ops.WithLabelValues(r)
	}
	reg.MustRegister(m.publish, m.failures, m.tooLarge, m.apply, m.ops, m.lag, m.healthy, m.current)
	return m
}

func (m *Metrics) published(d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.failures.Inc()
		return
	}
	m.publish.Observe(d.Seconds())
}

func (m *Metrics) refusedTooLarge() {
	if m != nil {
		m.tooLarge.Inc()
	}
}

func (m *Metrics) applied(result string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.apply.WithLabelValues(result).Add(float64(n))
}

func (m *Metrics) appliedOp(result string) {
	if m != nil {
		m.ops.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) setLag(n uint64) {
	if m != nil {
		m.lag.Set(float64(n))
	}
}

func (m *Metrics) setCurrent(n int) {
	if m != nil {
		m.current.Set(float64(n))
	}
}

func (m *Metrics) setHealthy(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.healthy.Set(1)
	} else {
		m.healthy.Set(0)
	}
}
