package intel

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xarfd/xarfd/metrics"
)

// Metrics are the intel collectors, registered in the daemon's registry.
// Labels are bounded: kind (4), channel (configured), zone (2), rcode
// (a handful).
type Metrics struct {
	reg     *prometheus.Registry
	hits    *prometheus.CounterVec
	queries *prometheus.CounterVec
}

// NewMetrics registers the intel collectors in m; nil m counts nothing.
func NewMetrics(m *metrics.Metrics) *Metrics {
	if m == nil {
		return nil
	}
	im := &Metrics{reg: m.Registry,
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_intel_hits_total",
			Help: "Indicator hits recorded, by channel.",
		}, []string{"channel"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xarfd_dnsbl_queries_total",
			Help: "Blocklist DNS queries answered, by zone (ip, domain, other) and rcode.",
		}, []string{"zone", "rcode"}),
	}
	m.Registry.MustRegister(im.hits, im.queries)
	return im
}

func (m *Metrics) listedFunc(count func(Kind) int) {
	if m == nil {
		return
	}
	for _, k := range Kinds {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "xarfd_intel_listed", Help: "Indicators listed now, by kind.",
			ConstLabels: prometheus.Labels{"kind": string(k)},
		}, func() float64 { return float64(count(k)) }))
	}
}

func (m *Metrics) hit(channel string) {
	if m != nil {
		m.hits.WithLabelValues(channel).Inc()
	}
}

func (m *Metrics) query(zone, rcode string) {
	if m != nil {
		m.queries.WithLabelValues(zone, rcode).Inc()
	}
}
