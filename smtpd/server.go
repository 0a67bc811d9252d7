// Package smtpd is xarfd's SMTP server, built on emersion/go-smtp.
//
// Message flow: a client connects (at most smtp.max_connections at once,
// smtp.max_connections_per_ip from one address or IPv6 /64, and
// smtp.reserved_connections more for peers in a channel's
// accept_from.networks; the next gets 421 4.7.0; every read has
// read_timeout and no session outlives session_timeout); it may STARTTLS and then AUTH as a user of
// smtp.auth_file; each RCPT is routed to a channel by exact address or
// "*@domain" (550 5.1.1 otherwise: we are no relay) and checked against
// that channel's accept_from networks (550 5.7.1) and users (530 5.7.0
// unauthenticated, 550 5.7.1 another user); DATA is read whole, bounded by
// max_message_bytes (552 5.3.4), max_line_length and the bytes all
// sessions may hold at once (max_inflight_bytes, 452 4.3.1), its DKIM signatures,
// SPF and iprev are checked, a channel's dkim_domains decide (550 5.7.1),
// an Authentication-Results header goes on top, and the message is handed
// to ingest once, with one delivery per channel. The reply is 250 only
// after ingest's transaction is durable; our own failures are 451 4.3.0.
// docs/auth.md says who may feed a channel and why each reply is chosen.
//
// Only *smtp.SMTPError values leave a session: go-smtp turns any other
// error into a permanent 554 and shows its text to the client.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/auth"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/lograte"
	"github.com/xarfd/xarfd/mailauth"
	"github.com/xarfd/xarfd/metrics"
)

// Server is the SMTP side of one xarfd process.
type Server struct {
	cfg *config.Config // as at New: listeners, limits, hostname
	rt  atomic.Pointer[runtimeConfig]
	log zerolog.Logger
	m   *metrics.Metrics
	srv *smtp.Server
	// lim holds what the smtp section's limits derive to (see limits);
	// a reload may swap it.
	lim atomic.Pointer[limits]
	// refusals rate-limits the log lines of refused connections.
	refusals refusalLog
	// commitFails rate-limits the log lines of messages the store or the
	// cluster refused to commit: during a partition every message fails
	// alike, and the transaction log has each of them already.
	commitFails *lograte.Limiter

	checker   *mailauth.Checker
	authFails *failLimiter

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool
	// listeners are closed by Shutdown itself: go-smtp's Shutdown closes
	// only the listeners its Serve has registered, so a Serve that had not
	// started yet would accept for ever after it.
	listeners []net.Listener

	// bufs recycles DATA buffers. A buffer goes back only after ingest
	// returned, when the store has committed (bbolt has copied the bytes
	// into its pages) and nothing refers to it any more.
	bufs sync.Pool
}

// maxPooledBuf keeps an occasional huge message from pinning its buffer.
const maxPooledBuf = 1 << 20

func (s *Server) getBuf() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

func (s *Server) putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		s.bufs.Put(b)
	}
}

// runtimeConfig is what the configuration decides for each transaction: where
// a recipient routes, who may feed a channel, which ingester stores it.
// Reload swaps it whole; a transaction keeps the one it began with.
type runtimeConfig struct {
	router *Router
	ingest *ingest.Ingester
	users  *auth.Users      // nil: no smtp.auth_file, AUTH not offered
	cert   *tls.Certificate // nil: TLS off
}

func newRuntime(cfg *config.Config, in *ingest.Ingester, users *auth.Users, cert *tls.Certificate) (*runtimeConfig, error) {
	for i, ch := range cfg.Channels {
		for _, name := range ch.AcceptFrom.Users {
			if users == nil || !users.Has(name) {
				return nil, fmt.Errorf("channels[%d].accept_from.users: %q is not a user of smtp.auth_file %s", i, name, cfg.SMTP.AuthFile)
			}
		}
	}
	return &runtimeConfig{router: NewRouter(cfg.Channels), ingest: in, users: users, cert: cert}, nil
}

// New builds a server from cfg; Serve starts it. m may be nil.
func New(cfg *config.Config, in *ingest.Ingester, log zerolog.Logger, m *metrics.Metrics) (*Server, error) {
	s := &Server{
		cfg:         cfg,
		log:         log,
		m:           m,
		sessions:    map[*session]struct{}{},
		checker:     &mailauth.Checker{Resolver: mailauth.NewResolver(cfg.Resolver)},
		authFails:   newFailLimiter(authFailMax, authFailWindow, authFailEntries),
		commitFails: lograte.New(lograte.Every, nil),
	}
	lim := newLimits(cfg)
	s.lim.Store(lim)
	log.Info().Int64("max_inflight_bytes", lim.budget.max).Str("from", lim.inflightFrom).Msg("smtp DATA budget")
	m.Gauge("xarfd_smtp_inflight_bytes", "Bytes of DATA held in memory by SMTP sessions now.", func() float64 { return float64(s.lim.Load().budget.inUse()) })
	m.Gauge("xarfd_smtp_max_inflight_bytes", "The DATA budget: smtp.max_inflight_bytes, or derived from memory.", func() float64 { return float64(s.lim.Load().budget.max) })
	m.Gauge("xarfd_smtp_connections", "Open SMTP connections.", func() float64 { n, _ := s.lim.Load().conns.counts(); return float64(n) })
	var users *auth.Users
	if cfg.SMTP.AuthFile != "" {
		u, err := auth.LoadUsers(cfg.SMTP.AuthFile)
		if err != nil {
			return nil, err
		}
		users = u
	}
	var cert *tls.Certificate
	if cfg.SMTP.TLS.Enabled() {
		c, err := tls.LoadX509KeyPair(cfg.SMTP.TLS.CertFile, cfg.SMTP.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	rt, err := newRuntime(cfg, in, users, cert)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	srv := smtp.NewServer(s)
	// AUTH only over TLS (go-smtp answers 523 5.7.10 on a plain
	// connection and does not advertise it there).
	srv.AllowInsecureAuth = false
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.SMTP.MaxMessageBytes
	srv.MaxRecipients = cfg.SMTP.MaxRecipients
	srv.MaxLineLength = cfg.SMTP.MaxLineLength
	srv.ReadTimeout = cfg.SMTP.ReadTimeout.D()
	srv.WriteTimeout = cfg.SMTP.WriteTimeout.D()
	srv.ErrorLog = zerologAdapter{log}
	if cert != nil {
		// The certificate of the current runtime, so that a reload
		// renews it for the handshakes that follow.
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.rt.Load().cert, nil }}
	}
	s.srv = srv
	return s, nil
}

// Reload makes cfg's channels, sender rules and SMTP AUTH users (users,
// parsed from smtp.auth_file) and cert apply to transactions that start
// from now on, stored by in. A transaction in progress finishes with the
// configuration it began with, and the channels' accept_from.networks
// become the peers that may take the reserved connections. What New
// fixed stays: listeners, limits, hostname, and whether STARTTLS is
// offered (a nil cert keeps the current one). On error nothing changes.
func (s *Server) Reload(cfg *config.Config, in *ingest.Ingester, users *auth.Users, cert *tls.Certificate) error {
	if cert == nil {
		cert = s.rt.Load().cert
	}
	rt, err := newRuntime(cfg, in, users, cert)
	if err != nil {
		return err
	}
	s.rt.Store(rt)
	// The reserve follows the channels' accept_from.networks; its size
	// (smtp.reserved_connections) is a limit and stays.
	s.lim.Load().conns.setTrusted(acceptNetworks(cfg))
	return nil
}

// Serve accepts sessions on l until Shutdown; l is wrapped to enforce
// max_connections.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	err := s.srv.Serve(&limitListener{Listener: l, s: s})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	s.mu.Lock()
	stopping := s.draining
	s.mu.Unlock()
	if stopping && errors.Is(err, net.ErrClosed) {
		return nil // Shutdown closed it
	}
	return err
}

// Shutdown stops accepting, tells idle sessions 421 and closes them, lets
// sessions inside a transaction finish (until ctx ends, then closes
// them), and returns when none is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(context.Background()) }()

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case err := <-done:
			// net.ErrClosed: go-smtp closing a listener closed above.
			if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		case <-ctx.Done():
			s.srv.Close()
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ss := range s.sessions {
		ss.closeIfIdle()
	}
}

func (s *Server) track(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[ss] = struct{}{}
	if s.draining {
		ss.closeIfIdle()
	}
}

func (s *Server) untrack(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, ss)
}

// limitListener hands go-smtp only the connections the connLimiter
// admits; beyond that a client gets 421 4.7.0 and is closed, instead of
// waiting in the kernel's backlog with no answer.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lim := l.s.lim.Load()
		ip := peerAddr(c)
		release, refused := lim.conns.admit(ip)
		if refused != "" {
			go l.s.refuse(c, ip, refused)
			continue
		}
		now := time.Now()
		return &limitConn{Conn: c, release: release, readTimeout: lim.readTimeout, sessionEnd: now.Add(lim.sessionTimeout)}, nil
	}
}

// replied counts and logs one reply: the only caller of
// metrics.SMTPReply, so each reply is counted exactly once wherever it is
// decided (session.reply, a refused connection). The log line is at
// debug level: the transaction's own line (logTxn) is the one at info.
func (s *Server) replied(log zerolog.Logger, cmd string, e *smtp.SMTPError) {
	s.m.SMTPReply(e.Code)
	if ev := log.Debug(); ev.Enabled() {
		ev.Str("cmd", cmd).Int("code", e.Code).
			Str("enhanced_code", fmt.Sprintf("%d.%d.%d", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])).
			Msg("smtp reply")
	}
}

// refuseWriteTimeout bounds the 421 to a refused client: it need not read.
const refuseWriteTimeout = 5 * time.Second

func (s *Server) refuse(c net.Conn, ip netip.Addr, why string) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	c.Write([]byte(replyLine(s.cfg.Hostname, errTooManyConns)))
	s.replied(s.log, "connect", errTooManyConns)
	if n, ok := s.refusals.note(why, time.Now()); ok {
		lim := s.lim.Load()
		open, peers := lim.conns.counts()
		s.log.Warn().Str("peer", ip.String()).Int("code", errTooManyConns.Code).Str("limit", why).
			Int("refused", n).Int("open", open).Int("peer_networks", peers).
			Int("max_connections", lim.conns.max).Int("max_connections_per_ip", lim.conns.perIP).
			Msg("smtp connections refused")
	}
}

// refusalLog lets through one log line per reason and second, carrying
// how many refusals it stands for: a flood of connections must not
// become a flood of log lines.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	n    map[string]int
}

func (r *refusalLog) note(why string, now time.Time) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.n = map[string]time.Time{}, map[string]int{}
	}
	r.n[why]++
	if now.Sub(r.last[why]) < time.Second {
		return 0, false
	}
	n := r.n[why]
	r.last[why], r.n[why] = now, 0
	return n, true
}

// limitConn returns its slot on Close, and renews the read deadline on
// every read from the socket, so read_timeout bounds each pause of the
// client, inside DATA too, rather than the whole transfer: a large message
// on a slow link is not cut off, a stalled one is. (go-smtp sets the
// deadline only per command line, and its DATA reader fills whole
// buffers.) No deadline goes past sessionEnd: a client that trickles a
// byte now and then, never pausing for read_timeout, is cut off there.
type limitConn struct {
	net.Conn
	release     func()
	readTimeout time.Duration
	sessionEnd  time.Time
}

func (c *limitConn) Read(p []byte) (int, error) {
	d := time.Now().Add(c.readTimeout)
	if c.sessionEnd.Before(d) {
		d = c.sessionEnd
	}
	c.Conn.SetReadDeadline(d)
	return c.Conn.Read(p)
}

func (c *limitConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func replyLine(host string, e *smtp.SMTPError) string {
	c := e.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s %s\r\n", e.Code, c[0], c[1], c[2], host, e.Message)
}

// zerologAdapter routes go-smtp's own error log (accept errors, panics)
// into our structured log.
type zerologAdapter struct{ l zerolog.Logger }

func (z zerologAdapter) Printf(format string, v ...any) { z.l.Error().Msgf(format, v...) }
func (z zerologAdapter) Println(v ...any)               { z.l.Error().Msg(fmt.Sprint(v...)) }
