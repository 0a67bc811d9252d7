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
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/auth"
	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/cluster"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/console"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/internal/ops"
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

// newLogger writes to w from level on; the level can change while it
// runs (SIGHUP with a new log.level).
func newLogger(w io.Writer, level *atomic.Int32) zerolog.Logger {
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(levelFilter{w: w, min: level}).Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

// levelFilter drops events below min. The logger itself is set to debug,
// so that a reload to debug needs no new logger in every component.
type levelFilter struct {
	w   io.Writer
	min *atomic.Int32
}

func (f levelFilter) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f levelFilter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l < zerolog.Level(f.min.Load()) {
		return len(p), nil
	}
	return f.w.Write(p)
}

func cmdServe(args []string, stderr io.Writer) int {
	// SIGHUP's default action is to exit: catch it before anything else,
	// so that a reload sent while the daemon starts does not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `file` (default: the embedded default)")
	logLevel := fs.String("log-level", "", "log from this `level` on: debug, info, warn or error (default: log.level of the configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var flagLevel zerolog.Level = zerolog.NoLevel
	if *logLevel != "" {
		l, err := parseLevel(*logLevel)
		if err != nil {
			fmt.Fprintf(stderr, "xarfd serve: -log-level: %v\n", err)
			return 2
		}
		flagLevel = l
	}
	cfg, res, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	d := &daemon{path: *path, flagLevel: flagLevel, hup: hup}
	d.setLevel(cfg)
	log := newLogger(stderr, &d.level)
	if err := d.serve(cfg, res, log); err != nil {
		log.Error().Err(err).Msg("xarfd stopped")
		return 1
	}
	return 0
}

func parseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "debug", "info", "warn", "error":
		return zerolog.ParseLevel(s)
	}
	return zerolog.NoLevel, fmt.Errorf("%q: want debug, info, warn or error", s)
}

// daemon is one running `xarfd serve`: what a reload needs to reach.
type daemon struct {
	path      string // -config; "" = the embedded default
	flagLevel zerolog.Level
	level     atomic.Int32
	hup       chan os.Signal

	cfg     *config.Config // the configuration in force
	log     zerolog.Logger
	st      *store.Store
	inOpt   ingest.Options
	rep     *reporter.Reporter
	cases   *cases.Manager
	curCfg  atomic.Pointer[config.Config] // read by the case mailer
	smtp    *smtpd.Server
	api     *api.Server // nil: http.listen is empty
	console *console.Console
	// httpCfg is the configuration the HTTP listener (API and console)
	// applies: swapped together with the API's on a reload.
	httpCfg atomic.Pointer[config.Config]
	// in is the ingester in force (the console reprocesses with it).
	in       atomic.Pointer[ingest.Ingester]
	intel    *intel.Service // nil: no channel used intel at start
	node     *cluster.Node  // nil: a single node (no cluster block)
	sweep    context.CancelFunc
	sweepCtx context.Context
	wg       sync.WaitGroup

	// For xarfd_config_last_reload_successful and _timestamp_seconds,
	// read by the metrics endpoint: alert on a reload that was refused.
	reloadOK   atomic.Bool
	reloadTime atomic.Int64 // unix seconds of the last successful load
}

func (d *daemon) setLevel(cfg *config.Config) {
	l := d.flagLevel
	if l == zerolog.NoLevel {
		l, _ = zerolog.ParseLevel(cfg.Log.Level) // validated by config
	}
	d.level.Store(int32(l))
}

func (d *daemon) serve(cfg *config.Config, res *config.Resources, log zerolog.Logger) error {
	d.cfg, d.log = cfg, log
	for _, w := range cfg.Warnings() {
		log.Warn().Str("config", cfg.Source).Msg(w)
	}
	setMemoryLimit(log)
	m := metrics.New()
	slog := log.With().Str("component", "store").Logger()
	node := cfg.Hostname // names this node in outbox attempt histories
	if cfg.Cluster != nil {
		node = cfg.Cluster.Node
	}
	st, err := store.Open(cfg.DataDir, store.Options{
		Node:     node,
		OnCommit: m.StoreTransaction,
		OnDamage: func(id store.ID) {
			m.StoreDamaged()
			slog.Error().Str("id", id.String()).Msg("damaged record: its checksum does not hold; it is not served. Restore the store from a backup (docs/operations.md)")
		},
	})
	if err != nil {
		return err
	}
	d.st = st
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
	m.Gauge("xarfd_cases_active", "Own-network cases not resolved, or with a webhook call pending.", func() float64 {
		n, _ := st.ActiveCaseCount()
		return float64(n)
	})
	d.reloadOK.Store(true)
	d.reloadTime.Store(time.Now().Unix())
	m.Gauge("xarfd_config_last_reload_successful", "1 when the last configuration load (start or SIGHUP) was applied, 0 when it was refused.", func() float64 {
		if d.reloadOK.Load() {
			return 1
		}
		return 0
	})
	m.Gauge("xarfd_config_last_reload_success_timestamp_seconds", "When the configuration in force was loaded (Unix time).", func() float64 {
		return float64(d.reloadTime.Load())
	})
	m.Gauge("xarfd_store_healthy", "1 while the store's last commit succeeded, 0 while it cannot commit (disk full, I/O error).", func() float64 {
		if st.Health().OK {
			return 1
		}
		return 0
	})
	registerStoreMetrics(m.Registry, cfg, st, log)
	hub := api.NewHub(m) // the HTTP live stream; Publish never blocks
	schema, err := xarf.EmbeddedValidator()
	if err != nil {
		return fmt.Errorf("loading the XARF schemas: %w", err)
	}
	rep, err := newReporter(cfg, st, m, log)
	if err != nil {
		return err
	}
	d.rep = rep
	intelSvc, err := newIntel(cfg, st, m, hub, log)
	if err != nil {
		return err
	}
	d.intel = intelSvc
	d.curCfg.Store(cfg)
	caseHub := api.NewCaseHub()
	cm, err := newCases(cfg, &d.curCfg, st, caseHub, log)
	if err != nil {
		return err
	}
	d.cases = cm
	onReport := func(r *store.Report) { hub.Publish(r); rep.Wake(); intelSvc.Wake(); cm.Wake() } // none blocks
	d.inOpt = ingest.Options{Metrics: m, OnReport: onReport, Validator: ingest.XARFValidator(schema)}
	if cfg.Cluster != nil {
		// Reports the stream brings from other nodes are announced as
		// this node's own are: live stream, reporter, intel, cases.
		node, err := cluster.Start(cfg, res, st, cluster.Options{
			Logger:  log.With().Str("component", "cluster").Logger(),
			Metrics: cluster.NewMetrics(m.Registry),
			OnApply: onReport,
			ApplyOp: applyOps(st, onReport, rep, intelSvc, cm),
		})
		if err != nil {
			return err
		}
		d.node = node
		if intelSvc != nil {
			intelSvc.SetReplicator(node)
		}
		if cm != nil {
			cm.SetReplicator(node, cfg.Cluster.Node)
		}
		rep.SetReplicator(node)
		// Runs before the store closes (deferred earlier), after the
		// listeners stopped (below): nothing publishes any more.
		defer node.Close()
		d.inOpt.Replicator = node
		if err := claimWork(cfg, node, m, rep, cm); err != nil {
			return err
		}
		log.Info().Str("cluster", node.String()).Msg("cluster node started; mail is answered 451 until the stream is ready")
	}
	in, err := ingest.New(cfg, st, d.inOpt)
	if err != nil {
		return err
	}
	d.in.Store(in)
	srv, err := smtpd.New(cfg, in, log.With().Str("component", "smtpd").Logger(), m)
	if err != nil {
		return err
	}
	d.smtp = srv
	if err := srv.Reload(cfg, in, users(res), res.TLSCert); err != nil {
		return err // the resources check-config read, not others
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

	serveErr := make(chan error, len(listeners)+1)
	if httpL != nil {
		d.httpCfg.Store(cfg)
		con, err := console.New(console.Options{Config: d.httpCfg.Load, Store: st, Hub: hub, Intel: intelSvc, Cases: cm,
			Reprocess:         func(id store.ID) (ingest.Result, error) { return d.in.Load().Reprocess(id) },
			DeleteQuarantined: func(id store.ID) error { return d.in.Load().DeleteQuarantined(id) },
			Cancel:            rep.Cancel,
			Retry:             rep.Retry,
			Logger:            log.With().Str("component", "console").Logger(), Metrics: m})
		if err != nil {
			httpL.Close()
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
		d.console = con
		d.api = api.New(api.Options{Config: cfg, Store: st, Ingester: in, Metrics: m, Hub: hub, Intel: intelSvc,
			Cases: cm, CaseHub: caseHub, Logger: log.With().Str("component", "http").Logger(), Ready: ctx.Err,
			Console: con, Cluster: clusterStatus(d.node), Cancel: rep.Cancel, Retry: rep.Retry})
		d.wg.Go(func() {
			if err := d.api.Serve(httpL); err != nil {
				serveErr <- fmt.Errorf("http %s: %w", httpL.Addr(), err)
			}
		})
	}
	for _, l := range listeners {
		log.Info().Str("addr", l.Addr().String()).Str("hostname", cfg.Hostname).Msg("smtp listening")
		d.wg.Go(func() {
			if err := srv.Serve(l); err != nil {
				serveErr <- fmt.Errorf("smtp %s: %w", l.Addr(), err)
			}
		})
	}

	rctx, rcancel := context.WithCancel(context.Background())
	if err := runIntel(rctx, &d.wg, cfg, intelSvc, m, log); err != nil {
		rcancel()
		srv.Shutdown(context.Background())
		d.api.Shutdown(context.Background())
		d.wg.Wait()
		return err
	}
	d.sweepCtx = rctx
	d.startRetention(cfg)
	d.wg.Go(func() {
		if err := rep.Run(rctx); err != nil {
			log.Error().Err(err).Msg("reporter stopped")
		}
	})
	d.wg.Go(func() {
		if err := cm.Run(rctx); err != nil {
			log.Error().Err(err).Msg("cases stopped")
		}
	})
	d.summary(log.Info(), listeners, httpL).Msg("xarfd started")
	sd := newNotifier(log) // systemd Type=notify: readiness, watchdog
	sd.Notify(readyState(listeners, httpL))
	d.wg.Go(func() { sd.Watchdog(rctx, storeHealthy(st)) })

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info().Msg("stopping: finishing open sessions")
			break loop
		case runErr = <-serveErr:
			break loop
		case <-d.hup:
			sd.Reloading()
			d.reload(listeners, httpL)
			sd.Reloaded() // after a refused reload too: systemd waits for READY=1
		}
	}
	sd.Notify("STOPPING=1")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error().Err(err).Msg("smtp shutdown")
	}
	d.console.Close() // its live streams would hold the HTTP shutdown up
	if err := d.api.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error().Err(err).Msg("http shutdown")
	}
	rcancel()
	d.wg.Wait()
	log.Info().Msg("xarfd stopped")
	return runErr
}

// applyOps applies the operators' actions the cluster's stream brings
// (and this node's own, in stream order) to this node's services.
func applyOps(st *store.Store, onReport func(*store.Report), rep *reporter.Reporter, intelSvc *intel.Service, cm *cases.Manager) ops.Applier {
	quarantine := ingest.ApplyOp(st, onReport)
	return ops.Mux{ // a nil service skips its kind
		ops.Delist:           intelSvc.ApplyOp,
		ops.Case:             cm.ApplyOp,
		ops.QuarantineDelete: quarantine,
		ops.Reprocess:        quarantine,
		ops.Retry:            rep.ApplyOp,
	}.Apply
}

// clusterStatus is /healthz's view of node; nil without a cluster.
func clusterStatus(node *cluster.Node) func() api.ClusterStatus {
	if node == nil {
		return nil
	}
	return func() api.ClusterStatus {
		h := node.Health()
		return api.ClusterStatus{Node: h.Node, OK: h.OK, Reason: h.Reason, StreamLeader: h.StreamLeader, ConsumerLag: h.Lag,
			ConfigMismatch: h.ConfigMismatch}
	}
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

// users is the parsed smtp.auth_file of res, nil without one.
func users(res *config.Resources) *auth.Users {
	u, _ := res.Users.(*auth.Users)
	return u
}

// startRetention (re)starts the retention sweeps with cfg's channels; the
// first sweep runs at once.
func (d *daemon) startRetention(cfg *config.Config) {
	if d.sweep != nil {
		d.sweep()
	}
	retention := store.Retention{}
	for _, ch := range cfg.Channels {
		retention[ch.Name] = ch.Retention.D()
	}
	ctx, cancel := context.WithCancel(d.sweepCtx)
	d.sweep = cancel
	d.wg.Go(func() {
		d.st.RunRetention(ctx, retention, cfg.RetentionOrphaned.D(), retentionInterval, func(ch string, n int, err error) {
			if err != nil {
				d.log.Error().Err(err).Str("channel", ch).Msg("retention sweep failed")
				return
			}
			d.log.Info().Str("channel", ch).Int("deleted", n).Msg("retention sweep")
		})
	})
}

// summary adds what an operator checks first to ev: version, channels,
// listeners, reporter mode, store.
func (d *daemon) summary(ev *zerolog.Event, smtpL []net.Listener, httpL net.Listener) *zerolog.Event {
	cfg := d.cfg
	chans := zerolog.Arr()
	for _, ch := range cfg.Channels {
		uses := zerolog.Arr()
		for _, u := range ch.Uses {
			uses.Str(string(u))
		}
		chans.Dict(zerolog.Dict().Str("name", ch.Name).Str("kind", string(ch.Kind)).Array("uses", uses).
			Bool("redacts", ch.Redact.Enabled()).Int("addresses", len(ch.Addresses)))
	}
	addrs := make([]string, len(smtpL))
	for i, l := range smtpL {
		addrs[i] = l.Addr().String()
	}
	httpAddr := "off"
	if httpL != nil {
		httpAddr = httpL.Addr().String()
	}
	mode := "dry-run"
	if cfg.Reporter.Enabled {
		mode = "sending"
	}
	ev = ev.Str("version", version()).Str("config", cfg.Source).Array("channels", chans).
		Strs("smtp", addrs).Str("http", httpAddr).Str("reporter", mode).
		Str("log_level", zerolog.Level(d.level.Load()).String()).Str("data", d.st.Path())
	if fi, err := os.Stat(d.st.Path()); err == nil {
		ev = ev.Int64("store_bytes", fi.Size())
	}
	if d.node != nil {
		ev = ev.Str("cluster", d.node.String())
	}
	return ev
}

// reload reads the configuration file again and, when it is good, makes
// it apply to new sessions, transactions, requests and outbox steps. A
// bad file is refused with check-config's errors and changes nothing.
// Keys that only a restart can change keep their running values.
func (d *daemon) reload(smtpL []net.Listener, httpL net.Listener) {
	log := d.log
	d.reloadOK.Store(false) // until everything below succeeded
	cfg, res, err := loadConfig(d.path)
	if err != nil {
		log.Error().Str("config", sourceName(d.path)).Strs("errors", strings.Split(err.Error(), "\n")).
			Msg("configuration reload refused: the running configuration stays")
		return
	}
	for _, w := range cfg.Warnings() {
		log.Warn().Str("config", cfg.Source).Msg(w)
	}
	if keys := keepRestartOnly(d.cfg, cfg); len(keys) > 0 {
		log.Warn().Strs("keys", keys).Msg("configuration reload: these keys changed but take effect only at a restart; their running values stay")
	}
	in, err := ingest.New(cfg, d.st, d.inOpt)
	if err != nil {
		log.Error().Err(err).Msg("configuration reload refused: the running configuration stays")
		return
	}
	if err := d.rep.Reload(cfg); err != nil {
		log.Error().Err(err).Msg("configuration reload refused: the running configuration stays")
		return
	}
	if err := d.cases.Reload(cfg); err != nil {
		log.Error().Err(err).Msg("configuration reload: subscribers kept the running configuration")
	}
	d.curCfg.Store(cfg)
	// Prepare checked the users against this very value: this cannot
	// fail after the reporter's swap.
	if err := d.smtp.Reload(cfg, in, users(res), res.TLSCert); err != nil {
		log.Error().Err(err).Msg("configuration reload: smtp kept the running configuration")
		return
	}
	d.in.Store(in)
	if d.api != nil {
		d.api.Reload(cfg, in)
		d.httpCfg.Store(cfg)
	}
	if d.intel != nil {
		// New trap addresses and redacted domains must never become
		// indicators, from the next report on.
		d.intel.Reload(cfg)
	} else if cfg.IntelChannels() {
		log.Warn().Msg("configuration reload: a channel now uses intel, but the intel service starts only at a restart; its reports are mined after it")
	}
	d.cfg = cfg
	d.setLevel(cfg)
	d.startRetention(cfg)
	d.reloadOK.Store(true)
	d.reloadTime.Store(time.Now().Unix())
	d.summary(log.Info(), smtpL, httpL).Msg("configuration reloaded")
}

func sourceName(path string) string {
	if path == "" {
		return config.EmbeddedSource
	}
	return path
}

// keepRestartOnly copies into next the values of running that a reload
// cannot change (listeners are bound, the store is open, limits and the
// host name are built into the SMTP server), so that every component
// sees the values in force, and returns the keys whose value differed.
func keepRestartOnly(running, next *config.Config) []string {
	var keys []string
	keep := func(key string, differs bool, restore func()) {
		if differs {
			keys = append(keys, key)
			restore()
		}
	}
	keep("hostname", running.Hostname != next.Hostname, func() { next.Hostname = running.Hostname })
	keep("data_dir", running.DataDir != next.DataDir, func() { next.DataDir = running.DataDir })
	keep("resolver", running.Resolver != next.Resolver, func() { next.Resolver = running.Resolver })
	keep("http.listen", running.HTTP.Listen != next.HTTP.Listen, func() { next.HTTP.Listen = running.HTTP.Listen })
	keep("smtp.tls", running.SMTP.TLS.Enabled() != next.SMTP.TLS.Enabled(), func() { next.SMTP.TLS = running.SMTP.TLS })
	// The NATS server or connection, the stream and the consumer are
	// built once, at start.
	keep("cluster", !reflect.DeepEqual(running.Cluster, next.Cluster), func() { next.Cluster = running.Cluster })
	// The intel service (zones, DNS listeners, export, policy) keeps the
	// configuration it started with.
	keep("intel", !reflect.DeepEqual(running.Intel, next.Intel), func() { next.Intel = running.Intel })
	// Every other smtp key is a listener or a limit. The certificate
	// files and the users file are read again at each reload.
	rv, nv := reflect.ValueOf(&running.SMTP).Elem(), reflect.ValueOf(&next.SMTP).Elem()
	for i := 0; i < rv.NumField(); i++ {
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("yaml"), ",")
		if name == "tls" || name == "auth_file" {
			continue
		}
		keep("smtp."+name, !reflect.DeepEqual(rv.Field(i).Interface(), nv.Field(i).Interface()), func() { nv.Field(i).Set(rv.Field(i)) })
	}
	return keys
}

// newReporter builds the outbox worker. XARFD_TEST_MX_PORT (tests only)
// makes MX delivery use another port than 25, so that end-to-end tests
// can point MX records at a desk on 127.0.0.1.
func newReporter(cfg *config.Config, st *store.Store, m *metrics.Metrics, log zerolog.Logger) (*reporter.Reporter, error) {
	opt := reporter.Options{Metrics: m, Logger: log.With().Str("component", "reporter").Logger(), UserAgent: "xarfd/" + version()}
	if cfg.Cluster != nil {
		// One lease for the entry in this node's store and its claim in
		// the cluster (cluster.ReportClaimOptions).
		opt.Lease = cfg.Cluster.ClaimLease.D()
	}
	if p := os.Getenv("XARFD_TEST_MX_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("XARFD_TEST_MX_PORT=%q: want a port number", p)
		}
		opt.MXPort = n
	}
	return reporter.New(cfg, st, opt)
}

// setMemoryLimit gives the Go runtime a soft memory limit of nine tenths
// of what this process may use (its cgroup's limit, or the host's
// MemAvailable at start), unless GOMEMLIMIT sets one. Without it the
// garbage collector lets the heap grow to twice what is live, and under
// a flood of large messages that headroom alone can cross the cgroup
// limit; with it the collector works harder near the limit instead. The
// DATA budget (smtp.max_inflight_bytes) bounds what is live.
func setMemoryLimit(log zerolog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	mem, from := smtpd.AvailableMemory()
	if mem <= 0 {
		return
	}
	limit := mem / 10 * 9
	debug.SetMemoryLimit(limit)
	log.Info().Int64("bytes", limit).Str("from", from).Msg("go memory limit")
}

// claimWork makes every report, notification and restrict call of this
// node claimed cluster-wide in the KV buckets of cluster/claim.go, so
// that each is done once although every node holds them all
// (docs/reporting.md, "Clusters").
func claimWork(cfg *config.Config, node *cluster.Node, m *metrics.Metrics, rep *reporter.Reporter, cm *cases.Manager) error {
	cc := cfg.Cluster
	claims := make([]*cluster.Claims, 3)
	for i, opt := range []cluster.ClaimOptions{
		cluster.ReportClaimOptions(cfg, cc.Node, cc.Replicas, m),
		cluster.NotifyClaimOptions(cfg, cc.Node, cc.Replicas, m),
		cluster.RestrictClaimOptions(cfg, cc.Node, cc.Replicas, m),
	} {
		c, err := cluster.NewClaims(node.JetStream(), opt)
		if err != nil {
			return fmt.Errorf("cluster claims: %w", err)
		}
		claims[i] = c
	}
	rep.SetClaims(claims[0])
	cm.SetClaims(claims[1], claims[2])
	return nil
}
