package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/smtpd"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/xarf"
)

// shutdownGrace is how long a stopping daemon lets sessions that are
// inside a transaction finish before it closes them.
const shutdownGrace = 30 * time.Second

// retentionInterval is how often expired data is swept.
const retentionInterval = 10 * time.Minute

func newLogger(w io.Writer) zerolog.Logger {
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).With().Timestamp().Logger()
}

func cmdServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `file` (default: the embedded default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := newLogger(stderr)
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := serve(cfg, log); err != nil {
		log.Error().Err(err).Msg("xarfd stopped")
		return 1
	}
	return 0
}

func serve(cfg *config.Config, log zerolog.Logger) error {
	for _, w := range cfg.Warnings() {
		log.Warn().Str("config", cfg.Source).Msg(w)
	}
	m := metrics.New()
	st, err := store.Open(cfg.DataDir, store.Options{OnCommit: m.StoreTransaction})
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error().Err(err).Msg("closing store")
		}
	}()
	if v := st.FoundSchema(); v != 0 && v != store.SchemaVersion {
		log.Info().Uint64("from", v).Uint64("to", store.SchemaVersion).Msg("database schema migrated")
	}
	if n, err := st.Recover(); err != nil {
		return fmt.Errorf("checking stored messages: %w", err)
	} else if n > 0 {
		log.Warn().Int("quarantined", n).Msg("unreadable records moved to quarantine at start")
	}

	warnOrphaned(cfg, st, log)

	m.Gauge("xarfd_outbox_pending", "Reports waiting in the outbox.", func() float64 {
		n, _ := st.OutboxDepth()
		return float64(n)
	})
	hub := api.NewHub(m) // the HTTP live stream; Publish never blocks
	schema, err := xarf.EmbeddedValidator()
	if err != nil {
		return fmt.Errorf("loading the XARF schemas: %w", err)
	}
	rep, err := newReporter(cfg, st, m, log)
	if err != nil {
		return err
	}
	intelSvc, err := newIntel(cfg, st, m, hub, log)
	if err != nil {
		return err
	}
	onReport := func(r *store.Report) { hub.Publish(r); rep.Wake(); intelSvc.Wake() } // none blocks
	in, err := ingest.New(cfg, st, ingest.Options{Metrics: m, OnReport: onReport, Validator: ingest.XARFValidator(schema)})
	if err != nil {
		return err
	}
	srv, err := smtpd.New(cfg, in, log.With().Str("component", "smtpd").Logger(), m)
	if err != nil {
		return err
	}
	var listeners []net.Listener
	for _, addr := range cfg.SMTP.Listen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("smtp.listen %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	var httpL net.Listener // nil: http.listen is empty, the API is off
	if cfg.HTTP.Listen != "" {
		if httpL, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var wg sync.WaitGroup
	serveErr := make(chan error, len(listeners)+1)
	var apiSrv *api.Server // Shutdown of a nil one does nothing
	if httpL != nil {
		apiSrv = api.New(api.Options{Config: cfg, Store: st, Ingester: in, Metrics: m, Hub: hub, Intel: intelSvc,
			Logger: log.With().Str("component", "http").Logger(), Ready: ctx.Err})
		wg.Go(func() {
			if err := apiSrv.Serve(httpL); err != nil {
				serveErr <- fmt.Errorf("http %s: %w", httpL.Addr(), err)
			}
		})
	}
	for _, l := range listeners {
		log.Info().Str("addr", l.Addr().String()).Str("hostname", cfg.Hostname).Msg("smtp listening")
		wg.Go(func() {
			if err := srv.Serve(l); err != nil {
				serveErr <- fmt.Errorf("smtp %s: %w", l.Addr(), err)
			}
		})
	}

	retention := store.Retention{}
	for _, ch := range cfg.Channels {
		retention[ch.Name] = ch.Retention.D()
	}
	rctx, rcancel := context.WithCancel(context.Background())
	if err := runIntel(rctx, &wg, cfg, intelSvc, m, log); err != nil {
		rcancel()
		srv.Shutdown(context.Background())
		apiSrv.Shutdown(context.Background())
		wg.Wait()
		return err
	}
	wg.Go(func() {
		st.RunRetention(rctx, retention, cfg.RetentionOrphaned.D(), retentionInterval, func(ch string, n int, err error) {
			if err != nil {
				log.Error().Err(err).Str("channel", ch).Msg("retention sweep failed")
				return
			}
			log.Info().Str("channel", ch).Int("deleted", n).Msg("retention sweep")
		})
	})
	wg.Go(func() {
		if err := rep.Run(rctx); err != nil {
			log.Error().Err(err).Msg("reporter stopped")
		}
	})
	log.Info().Str("config", cfg.Source).Str("data", st.Path()).Int("channels", len(cfg.Channels)).Msg("xarfd started")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Msg("stopping: finishing open sessions")
	case runErr = <-serveErr:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error().Err(err).Msg("smtp shutdown")
	}
	if err := apiSrv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error().Err(err).Msg("http shutdown")
	}
	rcancel()
	wg.Wait()
	log.Info().Msg("xarfd stopped")
	return runErr
}

// warnOrphaned logs each channel that has data in the store but is not
// in the configuration (removed or renamed): its own retention no longer
// applies, retention_orphaned does.
func warnOrphaned(cfg *config.Config, st *store.Store, log zerolog.Logger) {
	var names []string
	for i := range cfg.Channels {
		names = append(names, cfg.Channels[i].Name)
	}
	orph, err := st.Orphaned(names)
	if err == nil && len(orph) > 0 {
		var stats []store.ChannelStat
		if stats, err = st.ChannelStats(orph); err == nil {
			for _, s := range stats {
				log.Warn().Str("channel", s.Name).Int("records", s.Records).Time("oldest", s.Oldest).
					Str("retention_orphaned", cfg.RetentionOrphaned.D().String()).
					Msg("stored channel is not in the configuration: its data is deleted after retention_orphaned (GET /api/v1/channels lists it)")
			}
		}
	}
	if err != nil {
		log.Error().Err(err).Msg("looking for stored channels that are not configured")
	}
}

// newReporter builds the outbox worker. XARFD_TEST_MX_PORT (tests only)
// makes MX delivery use another port than 25, so that end-to-end tests
// can point MX records at a desk on 127.0.0.1.
func newReporter(cfg *config.Config, st *store.Store, m *metrics.Metrics, log zerolog.Logger) (*reporter.Reporter, error) {
	opt := reporter.Options{Metrics: m, Logger: log.With().Str("component", "reporter").Logger(), UserAgent: "xarfd/" + version()}
	if p := os.Getenv("XARFD_TEST_MX_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("XARFD_TEST_MX_PORT=%q: want a port number", p)
		}
		opt.MXPort = n
	}
	return reporter.New(cfg, st, opt)
}
