package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// newIntel builds the indicator service when a channel uses intel (nil
// otherwise). XARFD_TEST_CLOCK_OFFSET (tests only) moves its clock by a
// duration, so that end-to-end tests see listings expire without
// waiting a day.
func newIntel(cfg *config.Config, st *store.Store, m *metrics.Metrics, hub *api.Hub, log zerolog.Logger) (*intel.Service, error) {
	if !cfg.IntelChannels() {
		if len(cfg.Intel.DNS.Listen) > 0 {
			log.Warn().Msg("intel.dns.listen is set but no channel uses intel: no blocklist DNS server")
		}
		return nil, nil
	}
	now := time.Now
	if v := os.Getenv("XARFD_TEST_CLOCK_OFFSET"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("XARFD_TEST_CLOCK_OFFSET=%q: want a duration", v)
		}
		now = func() time.Time { return time.Now().Add(d) }
	}
	return intel.New(cfg, st, intel.Options{Now: now, OnEvent: hub.PublishIndicator, Metrics: intel.NewMetrics(m),
		Logger: log.With().Str("component", "intel").Logger()})
}

// runIntel starts the blocklist DNS server, the mining worker and the
// rbldnsd export; they stop when ctx ends. A DNS address in use is an
// error at start.
func runIntel(ctx context.Context, wg *sync.WaitGroup, cfg *config.Config, svc *intel.Service, m *metrics.Metrics, log zerolog.Logger) error {
	if svc == nil {
		return nil
	}
	log = log.With().Str("component", "intel").Logger()
	if len(cfg.Intel.DNS.Listen) > 0 {
		d := intel.NewDNS(cfg, svc, intel.LookupBase(cfg), svc.Metrics())
		bound, wait, err := d.Serve(ctx, cfg.Intel.DNS.Listen)
		if err != nil {
			return err
		}
		for _, a := range bound {
			log.Info().Str("addr", a).Str("ip_zone", cfg.Intel.IPZone).Str("domain_zone", cfg.Intel.DomainZone).Msg("dns listening")
		}
		wg.Go(wait)
	}
	wg.Go(func() {
		if err := svc.Run(ctx); err != nil {
			log.Error().Err(err).Msg("intel worker stopped")
		}
	})
	if dir := cfg.Intel.Export.Dir; dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("intel.export.dir %s: %w", dir, err)
		}
		wg.Go(func() {
			t := time.NewTicker(cfg.Intel.Export.Interval.D())
			defer t.Stop()
			for {
				if err := svc.Export(dir); err != nil {
					log.Error().Err(err).Msg("rbldnsd export")
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	return nil
}

// writeIndicators prints {"file":…,"indicators":[…]}: what the intel
// worker would extract from this report and its stored bytes.
func writeIndicators(w io.Writer, name string, cfg *config.Config, channel string, env store.Envelope, e store.Entry) {
	in := intel.Input{SourceIP: e.Report.SourceIP, MailFrom: env.MailFrom, Raw: e.Raw}
	if e.Message != nil {
		in.Rcpts = e.Message.Envelope.Rcpts
	}
	json.NewEncoder(w).Encode(struct {
		File       string            `json:"file"`
		Indicators []intel.Indicator `json:"indicators"`
	}{name, intel.NewExtractor(cfg).Extract(channel, in)})
}
