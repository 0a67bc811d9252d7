package main

import (
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// lastReportLookback bounds the search for a channel's newest report, so
// that a scrape never walks a quiet channel's whole history.
const lastReportLookback = 7 * 24 * time.Hour

// storeCollector exposes, at scrape time, what the alert rules in
// packaging/prometheus need from the store and its disk: the database
// size, the free space of data_dir's file system, and each channel's
// newest report.
type storeCollector struct {
	st       *store.Store
	dir      string
	channels []string
	log      zerolog.Logger

	size, free, total, lastReport *prometheus.Desc
}

// registerStoreMetrics adds the store's scrape-time metrics to reg.
func registerStoreMetrics(reg *prometheus.Registry, cfg *config.Config, st *store.Store, log zerolog.Logger) {
	c := &storeCollector{
		st:  st,
		dir: filepath.Dir(st.Path()),
		log: log,
		size: prometheus.NewDesc("xarfd_store_size_bytes",
			"Size of the database file (what a backup writes).", nil, nil),
		free: prometheus.NewDesc("xarfd_data_dir_free_bytes",
			"Bytes available to xarfd on the file system of data_dir.", nil, nil),
		total: prometheus.NewDesc("xarfd_data_dir_size_bytes",
			"Size of the file system of data_dir.", nil, nil),
		lastReport: prometheus.NewDesc("xarfd_channel_last_report_timestamp_seconds",
			"Arrival time of the channel's newest stored report; the start of the 7-day look-back when it has none in it.",
			[]string{"channel"}, nil),
	}
	for _, ch := range cfg.Channels {
		c.channels = append(c.channels, ch.Name)
	}
	reg.MustRegister(c)
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.free
	ch <- c.total
	ch <- c.lastReport
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	if n, err := c.st.Size(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(n))
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(c.dir, &fs); err == nil {
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(fs.Bavail)*float64(fs.Bsize))
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(fs.Blocks)*float64(fs.Bsize))
	}
	since := time.Now().Add(-lastReportLookback)
	for _, name := range c.channels {
		reps, _, err := c.st.Reports(store.Query{Channel: name, Since: since, Limit: 1})
		if err != nil {
			c.log.Warn().Err(err).Str("channel", name).Msg("metrics: reading the newest report")
			continue
		}
		t := since
		if len(reps) == 1 {
			sec, nsec := reps[0].ID.Time().UnixTime()
			t = time.Unix(sec, nsec)
		}
		ch <- prometheus.MustNewConstMetric(c.lastReport, prometheus.GaugeValue, float64(t.UnixNano())/1e9, name)
	}
}
