// Package smtpd is xarfd's SMTP server, built on emersion/go-smtp.
//
// Message flow: a client connects (at most smtp.max_connections at once,
// the next gets 421 4.7.0); it may STARTTLS and then AUTH as a user of
// smtp.auth_file; each RCPT is routed to a channel by exact address or
// "*@domain" (550 5.1.1 otherwise: we are no relay) and checked against
// that channel's accept_from networks (550 5.7.1) and users (530 5.7.0
// unauthenticated, 550 5.7.1 another user); DATA is read whole, bounded by
// max_message_bytes (552 5.3.4) and max_line_length, its DKIM signatures,
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
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/auth"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/metrics"
)

// Server is the SMTP side of one xarfd process.
type Server struct {
	cfg    *config.Config
	router *Router
	ingest *ingest.Ingester
	log    zerolog.Logger
	m      *metrics.Metrics
	srv    *smtp.Server
	limit  chan struct{} // one token per open session

	// budget bounds the DATA bytes all sessions hold
	// (smtp.max_inflight_bytes); inflightWait is how long a session
	// waits for room in it.
	budget       *budget
	inflightWait time.Duration

	users     *auth.Users // nil: no smtp.auth_file, AUTH not offered
	checker   *auth.Checker
	authFails *failLimiter

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool

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

// New builds a server from cfg; Serve starts it. m may be nil.
func New(cfg *config.Config, in *ingest.Ingester, log zerolog.Logger, m *metrics.Metrics) (*Server, error) {
	s := &Server{
		cfg:          cfg,
		router:       NewRouter(cfg.Channels),
		ingest:       in,
		log:          log,
		m:            m,
		limit:        make(chan struct{}, cfg.SMTP.MaxConnections),
		sessions:     map[*session]struct{}{},
		checker:      &auth.Checker{Resolver: auth.NewResolver(cfg.Resolver)},
		authFails:    newFailLimiter(authFailMax, authFailWindow, authFailEntries),
		inflightWait: inflightWait,
	}
	inflight, from := InflightBudget(cfg)
	s.budget = newBudget(inflight)
	log.Info().Int64("max_inflight_bytes", inflight).Str("from", from).Msg("smtp DATA budget")
	m.Gauge("xarfd_smtp_inflight_bytes", "Bytes of DATA held in memory by SMTP sessions now.", func() float64 { return float64(s.budget.inUse()) })
	m.Gauge("xarfd_smtp_max_inflight_bytes", "The DATA budget, smtp.max_inflight_bytes or derived from memory.", func() float64 { return float64(s.budget.max) })
	if cfg.SMTP.AuthFile != "" {
		u, err := auth.LoadUsers(cfg.SMTP.AuthFile)
		if err != nil {
			return nil, err
		}
		s.users = u
	}
	for i, ch := range cfg.Channels {
		for _, name := range ch.AcceptFrom.Users {
			if s.users == nil || !s.users.Has(name) {
				return nil, fmt.Errorf("channels[%d].accept_from.users: %q is not a user of smtp.auth_file %s", i, name, cfg.SMTP.AuthFile)
			}
		}
	}
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
	if cfg.SMTP.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.SMTP.TLS.CertFile, cfg.SMTP.TLS.KeyFile)
		if err != nil {
			return nil, err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.srv = srv
	return s, nil
}

// Serve accepts sessions on l until Shutdown; l is wrapped to enforce
// max_connections.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(&limitListener{Listener: l, s: s})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, tells idle sessions 421 and closes them, lets
// sessions inside a transaction finish (until ctx ends, then closes
// them), and returns when none is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()

	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(context.Background()) }()

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeIdle()
		select {
		case err := <-done:
			if errors.Is(err, smtp.ErrServerClosed) {
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

// limitListener hands go-smtp at most cap(s.limit) connections at a time;
// beyond that a client gets 421 4.7.0 and is closed, instead of waiting
// in the kernel's backlog with no answer.
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
		select {
		case l.s.limit <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.s.limit }, readTimeout: l.s.cfg.SMTP.ReadTimeout.D()}, nil
		default:
			go l.s.refuse(c)
		}
	}
}

func (s *Server) refuse(c net.Conn) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(replyLine(s.cfg.Hostname, errTooManyConns)))
	s.m.SMTPReply(errTooManyConns.Code)
	s.log.Warn().Str("peer", c.RemoteAddr().String()).Int("code", errTooManyConns.Code).
		Int("max_connections", cap(s.limit)).Msg("smtp connection refused")
}

// limitConn returns its slot on Close, and renews the read deadline on
// every read from the socket, so read_timeout bounds each pause of the
// client, inside DATA too, rather than the whole transfer: a large message
// on a slow link is not cut off, a stalled one is. (go-smtp sets the
// deadline only per command line, and its DATA reader fills whole buffers.)
type limitConn struct {
	net.Conn
	once        sync.Once
	release     func()
	readTimeout time.Duration
}

func (c *limitConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.readTimeout))
	return c.Conn.Read(p)
}

func (c *limitConn) Close() error {
	c.once.Do(c.release)
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
