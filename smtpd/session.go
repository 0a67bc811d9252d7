package smtpd

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

// session is one SMTP connection (per-session state); txn is the message
// being received in it (per-message state), reset after DATA or RSET.
type session struct {
	s    *Server
	conn *smtp.Conn
	id   string
	peer netip.AddrPort
	log  zerolog.Logger

	mu     sync.Mutex // guards busy and closed against Shutdown
	busy   bool       // inside a transaction: MAIL given, not yet reset
	closed bool

	txn txn
}

type txn struct {
	started  time.Time
	from     string
	hasFrom  bool
	byChan   []ingest.Delivery // in first-seen order
	nRcpt    int
	rejected int
	lastCode int
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String())
	if err != nil {
		return nil, errBadPeer
	}
	ss := &session{
		s:    s,
		conn: c,
		id:   newSessionID(),
		peer: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
	}
	ss.log = s.log.With().Str("session", ss.id).Str("peer", ss.peer.String()).Logger()
	s.track(ss)
	return ss, nil
}

func newSessionID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// closeIfIdle ends a session that is between transactions, with 421, so
// that a stopping daemon does not wait read_timeout for silent clients.
// It is called with s.s.mu held.
func (ss *session) closeIfIdle() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.busy || ss.closed {
		return
	}
	ss.closed = true
	nc := ss.conn.Conn()
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte(replyLine(ss.s.cfg.Hostname, errShuttingDown)))
	nc.Close()
}

func (ss *session) setBusy(b bool) {
	ss.mu.Lock()
	ss.busy = b
	ss.mu.Unlock()
}

// Mail implements smtp.Session. The null reverse-path is accepted: bounces
// sent to trap addresses are evidence too.
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.setBusy(true)
	ss.txn = txn{started: time.Now(), from: from, hasFrom: true}
	return nil
}

// Rcpt implements smtp.Session: route, then the channel's peer policy.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ch := ss.s.router.Route(to)
	if ch == nil {
		return ss.reject(errUnknownRcpt)
	}
	if !allowedPeer(ch, ss.peer.Addr()) {
		return ss.reject(errSenderNotAllowed)
	}
	ss.txn.nRcpt++
	for i := range ss.txn.byChan {
		if ss.txn.byChan[i].Channel == ch {
			ss.txn.byChan[i].Rcpts = append(ss.txn.byChan[i].Rcpts, to)
			return nil
		}
	}
	ss.txn.byChan = append(ss.txn.byChan, ingest.Delivery{Channel: ch, Rcpts: []string{to}})
	return nil
}

func (ss *session) reject(e *smtp.SMTPError) error {
	ss.txn.rejected++
	ss.txn.lastCode = e.Code
	ss.s.m.SMTPReply(e.Code)
	return e
}

// Data implements smtp.Session: read the whole message, store it once per
// channel in one transaction, and only then answer 250.
func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		e := dataError(err)
		ss.logTxn(e.Code, len(raw), nil, nil)
		return e
	}
	env := store.Envelope{
		PeerIP:     ss.peer.Addr(),
		PeerPort:   ss.peer.Port(),
		HELO:       ss.conn.Hostname(),
		MailFrom:   ss.txn.from,
		ReceivedAt: time.Now().UTC(),
		TLS:        tlsState(ss.conn),
		Via:        "smtp",
	}
	res, err := ss.s.ingest.Accept(env, ss.txn.byChan, raw)
	if err != nil {
		ss.log.Error().Err(err).Msg("storing message failed")
		ss.logTxn(errLocal.Code, len(raw), nil, nil)
		return errLocal
	}
	idText := make([]string, len(res))
	for i, r := range res {
		idText[i] = r.ID.String()
	}
	ss.logTxn(250, len(raw), idText, res)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + strings.Join(idText, " ")}
}

// dataError maps a failure to read DATA to its reply.
func dataError(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se // 552 5.3.4 from go-smtp's size limit
	case errors.Is(err, smtp.ErrTooLongLine):
		return errLineTooLong
	case errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	}
	return errBroken
}

// logTxn writes the one log line of a transaction. It names no recipient
// and no body: both can be personal data of a redacting channel.
func (ss *session) logTxn(code, size int, ids []string, res []ingest.Result) {
	ev := ss.log.Info()
	if code >= 400 {
		ev = ss.log.Warn()
	}
	chans := make([]string, len(ss.txn.byChan))
	for i, d := range ss.txn.byChan {
		chans[i] = d.Channel.Name
	}
	ss.s.m.SMTPReply(code)
	redacted, quarantined, reports := 0, 0, 0
	for _, r := range res {
		redacted += r.Redaction.Total()
		if r.Quarantined {
			quarantined++
		}
		if r.Report {
			reports++
		}
	}
	ev.Strs("channels", chans).
		Strs("ids", ids).
		Str("helo", ss.conn.Hostname()).
		Int("rcpts", ss.txn.nRcpt).
		Int("rejected_rcpts", ss.txn.rejected).
		Int("size", size).
		Int("code", code).
		Int("redactions", redacted).
		Int("reports", reports).
		Int("quarantined", quarantined).
		Dur("duration", time.Since(ss.txn.started)).
		Msg("smtp transaction")
	ss.txn.lastCode = 0
	ss.txn.rejected = 0
}

// Reset implements smtp.Session. A transaction that ended without DATA
// (all recipients refused, or RSET) is logged here.
func (ss *session) Reset() {
	if ss.txn.hasFrom && ss.txn.lastCode != 0 {
		ss.logTxn(ss.txn.lastCode, 0, nil, nil)
	}
	ss.txn = txn{}
	ss.setBusy(false)
}

// Logout implements smtp.Session.
func (ss *session) Logout() error {
	if ss.txn.hasFrom && ss.txn.lastCode != 0 {
		ss.logTxn(ss.txn.lastCode, 0, nil, nil)
	}
	ss.s.untrack(ss)
	return nil
}

func tlsState(c *smtp.Conn) *store.TLSState {
	st, ok := c.TLSConnectionState()
	if !ok {
		return nil
	}
	return &store.TLSState{
		Version:     tls.VersionName(st.Version),
		CipherSuite: tls.CipherSuiteName(st.CipherSuite),
		ServerName:  st.ServerName,
	}
}
