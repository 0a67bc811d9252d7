package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/auth"
	"github.com/xarfd/xarfd/config"
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

	// authUser is the SMTP AUTH identity; "" until AUTH succeeds. A
	// session is new after STARTTLS, so it is never carried from a plain
	// connection into TLS.
	authUser string

	txn txn
}

type txn struct {
	rt       *runtimeConfig // the configuration at MAIL, kept to the end
	started  time.Time
	from     string
	hasFrom  bool
	byChan   []ingest.Delivery // in first-seen order
	nRcpt    int
	rejected int
	lastCode int
	checks   *auth.Results // set at the end of DATA
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
	if !ss.busy {
		ss.closeLocked(errShuttingDown)
	}
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
	ss.txn = txn{rt: ss.s.rt.Load(), started: time.Now(), from: from, hasFrom: true}
	return nil
}

// Rcpt implements smtp.Session: route, then the channel's peer policy.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ch := ss.txn.rt.router.Route(to)
	if ch == nil {
		return ss.reject(errUnknownRcpt)
	}
	if !allowedPeer(ch, ss.peer.Addr()) {
		return ss.reject(errSenderNotAllowed)
	}
	if users := ch.AcceptFrom.Users; len(users) > 0 {
		if ss.authUser == "" {
			return ss.reject(errAuthRequired)
		}
		if !slices.Contains(users, ss.authUser) {
			return ss.reject(errSenderNotAllowed)
		}
	}
	if n := len(ss.txn.byChan); n > 0 && !ss.hasChannel(ch) && (needsDKIM(ch) || needsDKIM(ss.txn.byChan[0].Channel)) {
		return ss.reject(errSeparateTransaction)
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

func (ss *session) hasChannel(ch *config.Channel) bool {
	for _, d := range ss.txn.byChan {
		if d.Channel == ch {
			return true
		}
	}
	return false
}

// needsDKIM reports whether ch is decided at the end of DATA.
func needsDKIM(ch *config.Channel) bool { return len(ch.AcceptFrom.DKIMDomains) > 0 }

func (ss *session) reject(e *smtp.SMTPError) error {
	ss.txn.rejected++
	ss.txn.lastCode = e.Code
	ss.s.m.SMTPReply(e.Code)
	return e
}

// Data implements smtp.Session: read the whole message, store it once per
// channel in one transaction, and only then answer 250.
func (ss *session) Data(r io.Reader) error {
	bp := ss.s.getBuf()
	defer ss.s.putBuf(bp)
	buf, err := readData(r, *bp)
	*bp = buf // keep a grown buffer for the next message
	raw := buf[headroom:]
	if err != nil {
		e := dataError(err)
		ss.logTxn(e.Code, len(raw), nil, nil)
		return e
	}
	receivedAt := time.Now().UTC()
	checks := ss.s.checker.Check(context.Background(), auth.Input{
		Raw:      raw,
		PeerIP:   ss.peer.Addr(),
		HELO:     ss.conn.Hostname(),
		MailFrom: ss.txn.from,
		AuthUser: ss.authUser,
	})
	ss.txn.checks = checks
	// One reply covers every recipient, and a DKIM-requiring channel's
	// recipients are alone in their transaction (see Rcpt): refusing here
	// never takes a delivery away from a channel that would accept it.
	for _, d := range ss.txn.byChan {
		switch checks.DKIMVerdict(d.Channel.AcceptFrom.DKIMDomains) {
		case auth.Refused:
			ss.logTxn(errNoDKIM.Code, len(raw), nil, nil)
			return errNoDKIM
		case auth.Deferred:
			ss.logTxn(errDKIMTemp.Code, len(raw), nil, nil)
			return errDKIMTemp
		}
	}
	// The header goes on top; the message below it stays byte for byte
	// as received. It is written into the headroom in front of the
	// message, so stamping copies nothing.
	hdr := checks.Header(ss.s.cfg.Hostname, auth.LineEnding(raw))
	var stamped []byte
	if len(hdr) <= headroom {
		stamped = buf[headroom-len(hdr):]
		copy(stamped, hdr)
	} else {
		stamped = append(append(make([]byte, 0, len(hdr)+len(raw)), hdr...), raw...)
	}
	env := store.Envelope{
		PeerIP:     ss.peer.Addr(),
		PeerPort:   ss.peer.Port(),
		HELO:       ss.conn.Hostname(),
		MailFrom:   ss.txn.from,
		ReceivedAt: receivedAt,
		TLS:        tlsState(ss.conn),
		AuthUser:   ss.authUser,
		Via:        "smtp",
	}
	res, err := ss.txn.rt.ingest.Accept(env, ss.txn.byChan, stamped)
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

// headroom is kept free in front of each message read, for the
// Authentication-Results header (a few hundred bytes).
const headroom = 2048

// readData appends DATA to buf[:headroom] and returns it; the message is
// buf[headroom:]. Unlike io.ReadAll it starts from a recycled buffer.
func readData(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) < headroom+4096 {
		buf = make([]byte, 0, headroom+64<<10)
	}
	buf = buf[:headroom]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
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
	if ss.authUser != "" {
		ev = ev.Str("auth_user", ss.authUser)
	}
	if c := ss.txn.checks; c != nil {
		dk := make([]string, len(c.DKIM))
		for i, d := range c.DKIM {
			dk[i] = d.Result + ":" + d.Domain
		}
		ev = ev.Strs("dkim", dk).Str("spf", c.SPF).Str("iprev", c.IPRev)
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
	ss.txn.checks = nil
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

// AuthMechanisms implements smtp.AuthSession. go-smtp asks only on a TLS
// connection (AllowInsecureAuth is off), so AUTH is never advertised in
// clear; without smtp.auth_file it is not advertised at all.
func (ss *session) AuthMechanisms() []string {
	if ss.s.rt.Load().users == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession for PLAIN (RFC 4616) and LOGIN.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.rt.Load().users == nil {
		ss.s.m.SMTPReply(smtp.ErrAuthUnsupported.Code)
		return nil, smtp.ErrAuthUnsupported
	}
	if _, isTLS := ss.conn.TLSConnectionState(); !isTLS {
		ss.s.m.SMTPReply(errEncryptionRequired.Code)
		return nil, errEncryptionRequired
	}
	if ss.txn.hasFrom {
		ss.s.m.SMTPReply(errAuthInTransaction.Code)
		return nil, errAuthInTransaction
	}
	if ss.s.authFails.blocked(ss.peer.Addr()) {
		ss.log.Warn().Int("code", errAuthThrottled.Code).Msg("smtp auth refused: too many failures from this address")
		ss.s.m.SMTPReply(errAuthThrottled.Code)
		ss.hangUp(errAuthThrottled)
		return nil, errAuthThrottled
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(ss.authenticate), nil
	case sasl.Login:
		return &loginServer{authenticate: ss.authenticate}, nil
	}
	ss.s.m.SMTPReply(smtp.ErrAuthUnknownMechanism.Code)
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks one user name and password. The authorization
// identity of PLAIN may be empty or the user's own name: nobody acts for
// somebody else here. Failures are counted against the peer's address;
// the user name tried is not logged (it is sometimes a password typed
// into the wrong field).
func (ss *session) authenticate(identity, user, password string) error {
	ok := ss.s.rt.Load().users.Verify(user, password)
	if !ok || (identity != "" && identity != user) {
		ss.s.authFails.fail(ss.peer.Addr())
		ss.s.m.SMTPReply(errAuthFailed.Code)
		ss.log.Warn().Int("code", errAuthFailed.Code).Msg("smtp auth failed")
		return errAuthFailed
	}
	ss.authUser = user
	ss.s.m.SMTPReply(235)
	ss.log.Info().Str("auth_user", user).Msg("smtp auth")
	return nil
}

// hangUp sends e and closes the connection, as closeIfIdle does. go-smtp
// then writes e again into the closed connection, which goes nowhere.
func (ss *session) hangUp(e *smtp.SMTPError) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closeLocked(e)
}

// closeLocked writes e and closes the connection, once; ss.mu is held.
func (ss *session) closeLocked(e *smtp.SMTPError) {
	if ss.closed {
		return
	}
	ss.closed = true
	nc := ss.conn.Conn()
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte(replyLine(ss.s.cfg.Hostname, e)))
	nc.Close()
}

// loginServer is the server side of the LOGIN mechanism (the
// draft-murchison-sasl-login exchange): "Username:", then "Password:",
// each answered in base64; an initial response is the user name.
type loginServer struct {
	step         int
	user         string
	authenticate func(identity, user, password string) error
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.user, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.authenticate("", l.user, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
