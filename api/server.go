package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/internal/lograte"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// Defaults of the tunable Options.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultStreamBuffer = 1024
	// DefaultMaxStreams bounds the open live streams (/api/v1/stream and
	// /api/v1/stream/cases together), as the console bounds its own.
	DefaultMaxStreams = 256
	// DefaultPageSize is the page size of listings without limit.
	DefaultPageSize = 100
)

// Timeouts of the http.Server. Long responses (the stream, the backup)
// extend their write deadline before every write instead.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 2 * time.Minute
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
	// writeWait bounds one write of a long response: a client that does
	// not take a chunk within it is disconnected.
	writeWait = 30 * time.Second
)

// Options are what a Server needs.
type Options struct {
	Config   *config.Config
	Store    *store.Store
	Ingester *ingest.Ingester
	// Metrics is served on /metrics; nil serves a fresh, empty set.
	Metrics *metrics.Metrics
	Logger  zerolog.Logger
	// Ready reports whether the rest of the daemon runs (the SMTP
	// listeners); nil means it does. /healthz also checks the store.
	Ready func() error
	// Hub is the live stream that ingest publishes to (Options.OnReport);
	// nil makes a new one, available as Server.Hub.
	Hub *Hub
	// Heartbeat is the interval of the stream's keep-alive comment
	// (DefaultHeartbeat when zero).
	Heartbeat time.Duration
	// StreamBuffer is how many reports a stream consumer may lag behind
	// before it is dropped (DefaultStreamBuffer when zero).
	StreamBuffer int
	// MaxStreams bounds the open live streams (DefaultMaxStreams when
	// zero).
	MaxStreams int
	// Intel serves the indicators and blocklists; nil = no channel uses
	// intel (the routes answer 404).
	Intel *intel.Service
	// Cases acts on own-network cases; nil answers 503 to the actions.
	// CaseHub carries case changes to /api/v1/cases/stream (nil: a new,
	// silent one).
	Cases   CaseService
	CaseHub *CaseHub
	// Console serves every path that is not the API's (/api/…, /healthz,
	// /metrics), behind the same guards (request log, Host check,
	// cross-site writes, body limit); nil answers them 404.
	Console http.Handler
	// Cluster, in cluster mode, reports the node's cluster state for
	// /healthz; nil on a single node.
	Cluster func() ClusterStatus
	// Cancel cancels an outbox entry (reporter.Reporter.Cancel, which
	// makes it hold cluster-wide); nil = Store.Cancel.
	Cancel CancelFunc
	// Retry requeues an outbox entry (reporter.Reporter.Retry, which
	// makes it hold cluster-wide); nil = Store.Requeue.
	Retry CancelFunc
}

// CancelFunc cancels pending outbox entry id as store.Store.Cancel does.
type CancelFunc func(ctx context.Context, id store.ID, now time.Time, reason string) (*store.OutboxEntry, error)

// StoreCancel is the CancelFunc of a single node: st.Cancel.
func StoreCancel(st *store.Store) CancelFunc {
	return func(_ context.Context, id store.ID, now time.Time, reason string) (*store.OutboxEntry, error) {
		return st.Cancel(id, now, reason)
	}
}

// ClusterStatus is the cluster's part of /healthz.
type ClusterStatus struct {
	Node string `json:"node"`
	// OK: connected to NATS, the stream has a leader.
	OK bool `json:"-"`
	// Reason is a fixed phrase when not OK.
	Reason string `json:"reason,omitempty"`
	// StreamLeader names the NATS server leading the stream.
	StreamLeader string `json:"stream_leader,omitempty"`
	// ConsumerLag is how many records of the stream this node has not
	// applied yet.
	ConsumerLag uint64 `json:"consumer_lag"`
	// ConfigMismatch names the nodes whose configuration differs from
	// this node's (channels, redaction, retention, reporter); it does not
	// make /healthz fail.
	ConfigMismatch []string `json:"config_mismatch,omitempty"`
}

// Server serves the HTTP API.
type Server struct {
	st    *store.Store
	view  atomic.Pointer[view]
	m     *metrics.Metrics
	log   zerolog.Logger
	ready func() error
	hub   *Hub
	beat  time.Duration
	buf   int
	intel *intel.Service // nil: no channel uses intel

	maxStreams int
	streams    atomic.Int64 // open live streams

	cases   CaseService
	caseHub *CaseHub
	console http.Handler         // nil: no console
	cluster func() ClusterStatus // nil: a single node
	cancel  CancelFunc
	retry   CancelFunc
	// commitFails rate-limits the log lines of submissions the store or
	// the cluster refused to commit.
	commitFails *lograte.Limiter
	// unhealthy rate-limits the "not healthy" lines: a load balancer
	// or monitor polls /healthz every few seconds for as long as the
	// node cannot accept (no quorum, a full disk).
	unhealthy *lograte.Limiter

	handler http.Handler
	srv     *http.Server

	closeOnce sync.Once
	closing   chan struct{} // closed when Shutdown begins: ends streams
}

// New returns a Server; it does not listen yet (see Serve).
func New(o Options) *Server {
	if o.Cancel == nil {
		o.Cancel = StoreCancel(o.Store)
	}
	if o.Retry == nil {
		o.Retry = func(_ context.Context, id store.ID, now time.Time, reason string) (*store.OutboxEntry, error) {
			return o.Store.Requeue(id, now, reason)
		}
	}
	s := &Server{
		st:      o.Store,
		cancel:  o.Cancel,
		retry:   o.Retry,
		m:       o.Metrics,
		log:     o.Logger,
		ready:   o.Ready,
		hub:     o.Hub,
		beat:    o.Heartbeat,
		buf:     o.StreamBuffer,
		closing: make(chan struct{}),
		intel:   o.Intel,
		cases:   o.Cases,
		caseHub: o.CaseHub,
		console: o.Console,

		maxStreams:  o.MaxStreams,
		cluster:     o.Cluster,
		commitFails: lograte.New(lograte.Every, nil),
		unhealthy:   lograte.New(lograte.Every, nil),
	}
	if s.caseHub == nil {
		s.caseHub = NewCaseHub()
	}
	if s.m == nil {
		s.m = metrics.New()
	}
	if s.hub == nil {
		s.hub = NewHub(s.m)
	}
	if s.beat <= 0 {
		s.beat = DefaultHeartbeat
	}
	if s.buf <= 0 {
		s.buf = DefaultStreamBuffer
	}
	if s.maxStreams <= 0 {
		s.maxStreams = DefaultMaxStreams
	}
	s.Reload(o.Config, o.Ingester)
	s.handler = s.routes()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          newStdLogger(s.log),
	}
	return s
}

// view is what the configuration decides for each request: the channels,
// the ingester that stores submissions, the tokens. Reload swaps it
// whole; a request keeps the one it began with.
type view struct {
	// cfg is the configuration in force: the daemon's reload keeps the
	// running values of the keys a reload cannot change (http.listen,
	// the smtp limits), so reading any key here is truthful.
	cfg      *config.Config
	in       *ingest.Ingester
	channels map[string]*config.Channel
	tokens   []token
}

// Reload makes cfg (its channels, http.tokens, http.hostnames,
// http.max_body_bytes) and the ingester in apply to requests from now
// on; a request in progress finishes with what it began with. The
// listener stays as at New.
func (s *Server) Reload(cfg *config.Config, in *ingest.Ingester) {
	v := &view{cfg: cfg, in: in, channels: map[string]*config.Channel{}, tokens: parseTokens(cfg.HTTP.Tokens, s.log)}
	for i := range cfg.Channels {
		v.channels[cfg.Channels[i].Name] = &cfg.Channels[i]
	}
	s.view.Store(v)
}

// Hub returns the live stream that ingest's OnReport should publish to.
func (s *Server) Hub() *Hub { return s.hub }

// Handler returns the API as an http.Handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves the API on l until Shutdown; it logs "http listening"
// with the listener's actual address first. It returns nil after
// Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.log.Info().Str("addr", l.Addr().String()).Bool("tokens", len(s.view.Load().tokens) > 0).Msg("http listening")
	err := s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown ends live streams, stops accepting, and waits for the other
// requests to finish until ctx ends. On a nil Server it does nothing.
func (s *Server) Shutdown(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.closeOnce.Do(func() { close(s.closing) })
	return s.srv.Shutdown(ctx)
}

// route is one endpoint with the scope it needs ("" = open).
type route struct {
	method, path string
	scope        string
	h            http.HandlerFunc
}

func (s *Server) routes() http.Handler {
	rs := []route{
		{"GET", "/healthz", "", s.healthz},
		{"GET", "/metrics", "", promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{}).ServeHTTP},
		{"GET", "/api/v1/reports", scopeRead, s.listReports},
		{"GET", "/api/v1/reports/{id}", scopeRead, s.getReport},
		{"GET", "/api/v1/reports/{id}/evidence", scopeRead, s.getEvidence},
		{"GET", "/api/v1/messages", scopeRead, s.listMessages},
		{"GET", "/api/v1/messages/{id}", scopeRead, s.getMessage},
		{"DELETE", "/api/v1/messages/{id}", scopeSubmit, s.deleteMessage},
		{"POST", "/api/v1/messages/{id}/reprocess", scopeSubmit, s.reprocessMessage},
		{"GET", "/api/v1/channels", scopeRead, s.listChannels},
		{"GET", "/api/v1/stats/hourly", scopeRead, s.hourlyStats},
		{"GET", "/api/v1/summary", scopeRead, s.summary},
		{"POST", "/api/v1/channels/{name}/messages", scopeSubmit, s.submitMessage},
		{"POST", "/api/v1/channels/{name}/reports", scopeSubmit, s.submitReport},
		{"GET", "/api/v1/stream", scopeRead, s.stream},
		{"GET", "/api/v1/outbox", scopeRead, s.listOutbox},
		{"GET", "/api/v1/outbox/{id}", scopeRead, s.getOutbox},
		{"GET", "/api/v1/outbox/{id}/message", scopeRead, s.getOutboxMessage},
		{"POST", "/api/v1/outbox/{id}/retry", scopeSubmit, s.retryOutbox},
		{"POST", "/api/v1/outbox/{id}/cancel", scopeSubmit, s.cancelOutbox},
		{"GET", "/api/v1/backup", scopeAdmin, s.backup},
		// Own-network cases (api/cases.go).
		{"GET", "/api/v1/cases", scopeRead, s.listCases},
		{"GET", "/api/v1/stream/cases", scopeRead, s.streamCases},
		{"GET", "/api/v1/cases/{id}", scopeRead, s.getCase},
		{"POST", "/api/v1/cases/{id}/notify", scopeSubmit, s.actCase("notify")},
		{"POST", "/api/v1/cases/{id}/restrict", scopeSubmit, s.actCase("restrict")},
		{"POST", "/api/v1/cases/{id}/resolve", scopeSubmit, s.actCase("resolve")},
	}
	rs = append(rs, s.intelRoutes()...)
	mux := http.NewServeMux()
	allow := map[string][]string{}
	for _, r := range rs {
		h := http.Handler(r.h)
		if want := writeContentType(r.method, r.path); want != "" {
			h = requireContentType(want, h)
		}
		if r.scope != "" {
			h = s.authorize(r.scope, h)
		}
		mux.Handle(r.method+" "+r.path, h)
		allow[r.path] = append(allow[r.path], r.method)
	}
	for path, methods := range allow {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			for _, m := range methods {
				w.Header().Add("Allow", m)
				if m == "GET" {
					w.Header().Add("Allow", "HEAD")
				}
			}
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if s.console != nil && !apiPath(r.URL.Path) {
			s.console.ServeHTTP(w, r)
			return
		}
		writeError(w, http.StatusNotFound, "not found")
	})
	// Outermost first: every request is logged; a foreign Host is
	// refused before anything else looks at it; a browser's cross-site
	// write before its body is read; the body limit holds for all.
	return s.logRequests(s.checkHost(s.crossOrigin(s.limitBody(mux))))
}

// apiPath reports whether path belongs to the API (an unknown one is a
// JSON 404 there, never a console page).
func apiPath(path string) bool {
	return path == "/api" || strings.HasPrefix(path, "/api/") || path == "/healthz" || path == "/metrics"
}

type healthBody struct {
	Status string `json:"status"`
	// Reason is a fixed phrase (never an error's text: no paths).
	Reason string `json:"reason,omitempty"`
	// Since is when the store entered its current state.
	Since *time.Time `json:"since,omitempty"`
	// Cluster is the node's cluster state, in cluster mode.
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// healthz answers 503 while the daemon is stopping, the store is closed
// or its last commit failed (disk full, I/O error), saying which; it
// turns back to 200 by itself once the store commits again (the store
// probes while it is unhealthy).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	body, code := healthBody{Status: "ok"}, http.StatusOK
	var cl *ClusterStatus
	if s.cluster != nil {
		st := s.cluster()
		cl = &st
	}
	reason, err := s.health()
	if reason == "" && cl != nil && !cl.OK {
		// Without a stream leader or a NATS connection, mail is
		// answered 451: a load balancer should send it elsewhere.
		reason = "cluster: " + cl.Reason
	}
	if reason != "" {
		if ok, n := s.unhealthy.Allow(reason); ok {
			ev := requestLog(r).Warn().Str("reason", reason).Int("repeated", n)
			if err != nil {
				ev = ev.Err(err)
			}
			ev.Msg("not healthy; the same reason is logged once a minute, repeated counts the others")
		}
		body, code = healthBody{Status: "unavailable", Reason: reason}, http.StatusServiceUnavailable
		if h := s.st.Health(); !h.OK && !h.Since.IsZero() {
			since := h.Since.UTC()
			body.Since = &since
		}
	}
	body.Cluster = cl
	writeJSON(w, code, body)
}

// health returns "" when healthy, else a reason for the client and the
// error behind it for the log.
func (s *Server) health() (string, error) {
	select {
	case <-s.closing:
		return "shutting down", nil
	default:
	}
	if err := s.st.Ping(); err != nil {
		return "store is not open", err
	}
	if h := s.st.Health(); !h.OK {
		return h.Reason, nil
	}
	if s.ready != nil {
		if err := s.ready(); err != nil {
			return "not ready", err
		}
	}
	return "", nil
}

// writeJSON replies with v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

type errorBody struct {
	Error     string   `json:"error"`
	Reasons   []string `json:"reasons,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
}

// writeError replies {"error": msg}; msg is always a fixed text or
// names a parameter, never an internal error's text.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

// internalError logs err with the request id and replies with a generic
// text naming only the request id.
func internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	requestLog(r).Error().Err(err).Msg(what)
	replyInternal(w, r, err)
}

// commitError is internalError for a submission the store or the cluster
// refused to commit (no quorum, a full disk): that repeats for every
// submission until it is fixed, so it is logged once a minute with the
// count of the others (each request's access log line stays).
func (s *Server) commitError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, ingest.ErrTooLarge) {
		// Permanent: the cluster's record would exceed what its
		// servers take (the node logs it).
		writeError(w, http.StatusRequestEntityTooLarge, "body exceeds the size limit")
		return
	}
	if !errors.Is(err, store.ErrCommit) {
		internalError(w, r, what, err)
		return
	}
	if ok, n := s.commitFails.Allow("commit"); ok {
		requestLog(r).Error().Err(err).Int("repeated", n).Msg(what + " failed; the same failure is logged once a minute, repeated counts the others")
	}
	replyInternal(w, r, err)
}

// replyInternal replies to a request that failed with err: a generic text
// naming only the request id.
func replyInternal(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := http.StatusInternalServerError, "internal error"
	switch {
	case store.IsClosed(err):
		code, msg = http.StatusServiceUnavailable, "unavailable, try again later"
	case errors.Is(err, store.ErrCommit):
		// Disk full or an I/O error: nothing was stored, and the
		// store probes until it can commit again (/healthz says why).
		w.Header().Set("Retry-After", "30")
		code, msg = http.StatusServiceUnavailable, "cannot store now, try again later"
	case errors.Is(err, store.ErrDamaged):
		// The log line (err) names the record; the client learns only
		// that it cannot be served, never the damaged bytes.
		msg = "stored data is damaged and cannot be served"
	}
	writeJSON(w, code, errorBody{Error: msg, RequestID: infoOf(r).id})
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
