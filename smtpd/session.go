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

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/mailauth"
	"github.com/xarfd/xarfd/store"
)

// session is one SMTP connection (per-session state); txn is the message
// being received in it (per-message state), replaced after DATA or RSET.
//
// go-smtp runs Data for BDAT in a goroutine of its own, which keeps
// reading while the connection's goroutine handles the commands between
// chunks: RSET, EHLO, QUIT or a broken connection call Reset or Logout
// while Data still runs. So the txn pointer changes only under mu, and a
// txn whose inData is set belongs to Data alone: Reset and Logout detach
// it and leave its log line and its budget to Data.
type session struct {
	s    *Server
	lim  *limits // the server's limits when the session began
	conn *smtp.Conn
	// nc is conn's network connection when the session began (a session
	// is new after STARTTLS). Shutdown's goroutine closes it: reading
	// conn.Conn() there raced with go-smtp swapping in the TLS conn.
	nc   net.Conn
	id   string
	peer netip.AddrPort
	log  zerolog.Logger

	mu     sync.Mutex // guards busy, closed and txn against Shutdown and BDAT's Data
	busy   bool       // inside a transaction: MAIL given, not yet reset
	closed bool
	txn    *txn // nil between transactions

	// authUser is the SMTP AUTH identity; "" until AUTH succeeds. A
	// session is new after STARTTLS, so it is never carried from a plain
	// connection into TLS.
	authUser string
}

// txn is one mail transaction. What Data needs from the connection
// (HELO, TLS, AUTH identity) is copied in at MAIL, because the
// connection's goroutine may change them while BDAT's Data runs.
type txn struct {
	rt       *runtimeConfig // the configuration at MAIL, kept to the end
	started  time.Time
	from     string
	helo     string
	tls      *store.TLSState
	authUser string
	size     int64             // SIZE= of MAIL, 0 if not given
	byChan   []ingest.Delivery // in first-seen order
	nRcpt    int
	rejected int
	lastCode int
	checks   *mailauth.Results // set at the end of DATA
	inData   bool              // Data owns the txn
	res      reservation       // DATA budget taken at MAIL for SIZE=
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String())
	if err != nil {
		s.replied(s.log, "connect", errBadPeer)
		return nil, errBadPeer
	}
	ss := &session{
		s:    s,
		lim:  s.lim.Load(),
		conn: c,
		nc:   c.Conn(),
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

// Mail implements smtp.Session. The null reverse-path is accepted: bounces
// sent to trap addresses are evidence too. A SIZE= parameter takes its
// bytes from the DATA budget now, so that a client is told 452 4.3.1
// before it sends a message there is no room for.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	t := &txn{
		rt:       ss.s.rt.Load(),
		started:  time.Now(),
		from:     from,
		helo:     ss.conn.Hostname(),
		tls:      tlsState(ss.conn),
		authUser: ss.authUser,
		res:      reservation{b: ss.lim.budget},
	}
	if opts != nil && opts.Size > 0 {
		t.size = min(opts.Size, ss.s.cfg.SMTP.MaxMessageBytes)
		if !t.res.grow(t.size, ss.lim.inflightWait) {
			ss.log.Warn().Int("code", errNoRoom.Code).Int64("size", t.size).Int64("inflight_bytes", ss.lim.budget.inUse()).
				Msg("smtp transaction refused at MAIL: DATA budget exhausted")
			return ss.reply("MAIL", errNoRoom)
		}
	}
	ss.mu.Lock()
	old := ss.txn
	ss.txn, ss.busy = t, true
	ss.mu.Unlock()
	ss.finish(old)
	return nil
}

// Rcpt implements smtp.Session: route, then the channel's peer policy.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	t := ss.current()
	if t == nil {
		return ss.reply("RCPT", errBadSequence) // go-smtp asks for MAIL first; never reached
	}
	ch := t.rt.router.Route(to)
	if ch == nil {
		return t.reject(ss, errUnknownRcpt)
	}
	if !allowedPeer(ch, ss.peer.Addr()) {
		return t.reject(ss, errSenderNotAllowed)
	}
	if users := ch.AcceptFrom.Users; len(users) > 0 {
		if ss.authUser == "" {
			return t.reject(ss, errAuthRequired)
		}
		if !slices.Contains(users, ss.authUser) {
			return t.reject(ss, errSenderNotAllowed)
		}
	}
	if n := len(t.byChan); n > 0 && !t.hasChannel(ch) && (needsDKIM(ch) || needsDKIM(t.byChan[0].Channel)) {
		return t.reject(ss, errSeparateTransaction)
	}
	t.nRcpt++
	for i := range t.byChan {
		if t.byChan[i].Channel == ch {
			t.byChan[i].Rcpts = append(t.byChan[i].Rcpts, to)
			return nil
		}
	}
	t.byChan = append(t.byChan, ingest.Delivery{Channel: ch, Rcpts: []string{to}})
	return nil
}

func (t *txn) hasChannel(ch *config.Channel) bool {
	for _, d := range t.byChan {
		if d.Channel == ch {
			return true
		}
	}
	return false
}

// needsDKIM reports whether ch is decided at the end of DATA.
func needsDKIM(ch *config.Channel) bool { return len(ch.AcceptFrom.DKIMDomains) > 0 }

// reject refuses one recipient. The transaction's log line (logTxn)
// carries how many were refused and the last code; the reply itself is
// counted here, once.
func (t *txn) reject(ss *session, e *smtp.SMTPError) error {
	t.rejected++
	t.lastCode = e.Code
	return ss.reply("RCPT", e)
}

// current returns the transaction in progress, or nil.
func (ss *session) current() *txn {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.txn
}

// Data implements smtp.Session: read the whole message, store it once per
// channel in one transaction, and only then answer 250.
func (ss *session) Data(r io.Reader) error {
	ss.mu.Lock()
	t := ss.txn
	if t == nil || t.inData || len(t.byChan) == 0 {
		// A BDAT goroutine of go-smtp that started after its transaction
		// was already reset: its reader is closed, nobody reads its reply
		// (so it is not one to count).
		ss.mu.Unlock()
		return errBroken
	}
	t.inData = true
	res := t.res // Data now owns what MAIL reserved
	t.res = reservation{b: res.b}
	ss.mu.Unlock()
	defer func() {
		res.releaseAll()
		ss.mu.Lock()
		t.inData = false
		ss.mu.Unlock()
	}()

	bp := ss.s.getBuf()
	defer ss.s.putBuf(bp)
	limit := ss.s.cfg.SMTP.MaxMessageBytes
	start := *bp
	if t.size > 0 && cap(start) < headroom+int(t.size)+readSlack {
		// SIZE= was reserved already: allocate once, no regrowth.
		start = make([]byte, 0, headroom+int(t.size)+readSlack)
	}
	buf, n, err := readData(r, start, int(res.held), func(n int) bool {
		return res.grow(min(int64(n), limit+1), ss.lim.inflightWait)
	})
	if cap(buf) <= maxPooledBuf {
		*bp = buf // keep a grown buffer for the next message
	}
	// A larger one is not pooled, and nothing here refers to it once
	// ingest has it: ingest lets go of it after redaction, so that it
	// is not held while the redacted copy is being stored.
	if err != nil {
		if errors.Is(err, smtp.ErrDataReset) {
			// RSET, EHLO, QUIT or a lost connection between BDAT chunks:
			// the client gets no reply to this transaction.
			if n == 0 {
				// Before the first byte: nothing to log. If the txn is
				// still current its reservation goes back to it.
				ss.mu.Lock()
				if ss.txn == t {
					t.res, res = res, reservation{}
				}
				ss.mu.Unlock()
			} else {
				ss.logTxn(t, 0, n, nil, nil)
			}
			return errBroken // not sent: no reply to count
		}
		e := dataError(err)
		if e == errTimeout || e == errBroken {
			// Close now: go-smtp would otherwise read on to the end of
			// the message to discard it, waiting for a client that
			// stopped, a second read_timeout.
			ss.hangUp(e)
		}
		if e == errNoRoom {
			ss.log.Warn().Int64("inflight_bytes", ss.lim.budget.inUse()).Int64("max_inflight_bytes", ss.lim.budget.max).
				Msg("smtp DATA budget exhausted")
		}
		ss.logTxn(t, e.Code, n, nil, nil)
		return ss.reply("DATA", e)
	}
	raw := buf[headroom:]
	receivedAt := time.Now().UTC()
	checks := ss.s.checker.Check(context.Background(), mailauth.Input{
		Raw:      raw,
		PeerIP:   ss.peer.Addr(),
		HELO:     t.helo,
		MailFrom: t.from,
		AuthUser: t.authUser,
	})
	t.checks = checks
	// One reply covers every recipient, and a DKIM-requiring channel's
	// recipients are alone in their transaction (see Rcpt): refusing here
	// never takes a delivery away from a channel that would accept it.
	for _, d := range t.byChan {
		switch checks.DKIMVerdict(d.Channel.AcceptFrom.DKIMDomains) {
		case mailauth.Refused:
			ss.logTxn(t, errNoDKIM.Code, n, nil, nil)
			return ss.reply("DATA", errNoDKIM)
		case mailauth.Deferred:
			ss.logTxn(t, errDKIMTemp.Code, n, nil, nil)
			return ss.reply("DATA", errDKIMTemp)
		}
	}
	// The header goes on top; the message below it stays byte for byte
	// as received. It is written into the headroom in front of the
	// message, so stamping copies nothing.
	hdr := checks.Header(ss.s.cfg.Hostname, mailauth.LineEnding(raw))
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
		HELO:       t.helo,
		MailFrom:   t.from,
		ReceivedAt: receivedAt,
		TLS:        t.tls,
		AuthUser:   t.authUser,
		Via:        "smtp",
	}
	results, err := t.rt.ingest.Accept(env, t.byChan, stamped)
	if errors.Is(err, ingest.ErrTooLarge) {
		ss.logTxn(t, errRecordTooLarge.Code, n, nil, nil)
		return ss.reply("DATA", errRecordTooLarge)
	}
	if err != nil {
		ss.logStoreFailure(err)
		ss.logTxn(t, errLocal.Code, n, nil, nil)
		return ss.reply("DATA", errLocal)
	}
	idText := make([]string, len(results))
	for i, r := range results {
		idText[i] = r.ID.String()
	}
	ss.logTxn(t, 250, n, idText, results)
	return ss.reply("DATA", &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + strings.Join(idText, " ")})
}

// logStoreFailure logs why a message was not stored. A refused commit
// (no cluster quorum, a full disk) repeats for every message until it is
// fixed: it is logged once a minute with the count of the repeats.
func (ss *session) logStoreFailure(err error) {
	if !errors.Is(err, store.ErrCommit) {
		ss.log.Error().Err(err).Msg("storing message failed")
		return
	}
	ok, n := ss.s.commitFails.Allow("commit")
	if !ok {
		return
	}
	ss.log.Error().Err(err).Int("repeated", n).Msg("storing message failed; the same failure is logged once a minute, repeated counts the others")
}

// headroom is kept free in front of each message read, for the
// Authentication-Results header (a few hundred bytes).
const headroom = 2048

// readSlack is room beyond a SIZE= declaration: clients count SIZE
// loosely (RFC 1870 asks only for an estimate), and the buffer should not
// regrow for the last few bytes.
const readSlack = 4096

// readData reads DATA after buf[:headroom] and returns the message at
// msg[headroom:] and its length n (on an error, what was read so far:
// msg is then only what fits in buf, good for nothing but its length).
// It starts from a recycled buffer; a message that does not fit goes on
// in chunks of up to readChunk, copied once into a buffer of its exact
// size at the end. Growing one buffer by append instead allocates about
// five times the message on the way (each growth copies it all) and holds
// up to 2.25 times it at once while it grows; chunks allocate it twice
// and hold it twice only during the final copy.
// Before each read it asks reserve for room for the message so far plus
// what that read may add, beyond the reserved bytes held already (SIZE=);
// when reserve says no, it stops with errNoRoom.
func readData(r io.Reader, buf []byte, reserved int, reserve func(n int) bool) (msg []byte, n int, err error) {
	if cap(buf) < headroom+4096 {
		buf = make([]byte, 0, headroom+64<<10)
	}
	buf = buf[:headroom]
	var chunks [][]byte // after buf, once it is full
	cur := buf[headroom:]
	for {
		if len(cur) == cap(cur) {
			cur = make([]byte, 0, min(max(n, minReserveStep), readChunk))
			chunks = append(chunks, cur)
		}
		if reserved <= n {
			// Small messages take a small share; the share doubles with
			// what arrives, up to reserveStep at a time.
			want := n + min(max(n, minReserveStep), reserveStep)
			if !reserve(want) {
				return buf, n, errNoRoom
			}
			reserved = want
		}
		end := min(cap(cur), len(cur)+reserved-n)
		m, rerr := r.Read(cur[len(cur):end])
		cur = cur[:len(cur)+m]
		n += m
		if chunks == nil {
			buf = buf[:headroom+len(cur)]
		} else {
			chunks[len(chunks)-1] = cur
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return buf, n, rerr
		}
	}
	if chunks == nil {
		return buf, n, nil
	}
	msg = make([]byte, headroom+n)
	at := copy(msg[headroom:], buf[headroom:])
	for _, c := range chunks {
		at += copy(msg[headroom+at:], c)
	}
	return msg, n, nil
}

// readChunk is the most a chunk of a large message holds: small enough
// that the last one wastes little, large enough that a 25 MiB message
// takes a few dozen.
const readChunk = 1 << 20

// dataError maps a failure to read DATA to its reply.
func dataError(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se // 552 5.3.4 from go-smtp's size limit, 452 4.3.1 from ours
	case errors.Is(err, smtp.ErrTooLongLine):
		return errLineTooLong
	case errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	}
	return errBroken
}

// logTxn writes the one log line of a transaction (code 0: abandoned in
// BDAT, nothing was answered). It only logs: the replies it names were
// counted by reply when they were given. It names no recipient
// and no body: both can be personal data of a redacting channel. The
// caller owns t: Data while t.inData, else the connection's goroutine.
func (ss *session) logTxn(t *txn, code, size int, ids []string, res []ingest.Result) {
	ev := ss.log.Info()
	if code >= 400 {
		ev = ss.log.Warn()
	}
	chans := make([]string, len(t.byChan))
	for i, d := range t.byChan {
		chans[i] = d.Channel.Name
	}
	if code == 0 {
		ev = ev.Bool("aborted", true) // code 0: the client abandoned BDAT, no reply
	}
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
	if t.authUser != "" {
		ev = ev.Str("auth_user", t.authUser)
	}
	if c := t.checks; c != nil {
		dk := make([]string, len(c.DKIM))
		for i, d := range c.DKIM {
			dk[i] = d.Result + ":" + d.Domain
		}
		ev = ev.Strs("dkim", dk).Str("spf", c.SPF).Str("iprev", c.IPRev)
	}
	ev.Strs("channels", chans).
		Strs("ids", ids).
		Str("helo", t.helo).
		Int("rcpts", t.nRcpt).
		Int("rejected_rcpts", t.rejected).
		Int("size", size).
		Int("code", code).
		Int("redactions", redacted).
		Int("reports", reports).
		Int("quarantined", quarantined).
		Dur("duration", time.Since(t.started)).
		Msg("smtp transaction")
	t.lastCode = 0
	t.rejected = 0
	t.checks = nil
}

// finish ends a transaction the connection's goroutine detached (RSET,
// a new MAIL, logout): one log line if it ended without DATA (every
// recipient refused), and its budget back. A txn still inside Data is
// left to Data, which logs and releases it.
func (ss *session) finish(t *txn) {
	if t == nil {
		return
	}
	ss.mu.Lock()
	inData := t.inData
	ss.mu.Unlock()
	if inData {
		return
	}
	if t.lastCode != 0 {
		ss.logTxn(t, t.lastCode, 0, nil, nil)
	}
	t.res.releaseAll()
}

// detach takes the current transaction away from the session.
func (ss *session) detach() *txn {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	t := ss.txn
	ss.txn, ss.busy = nil, false
	return t
}

// Reset implements smtp.Session. A transaction that ended without DATA
// (all recipients refused, or RSET) is logged here.
func (ss *session) Reset() {
	ss.finish(ss.detach())
}

// Logout implements smtp.Session.
func (ss *session) Logout() error {
	ss.finish(ss.detach())
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
		return nil, ss.reply("AUTH", smtp.ErrAuthUnsupported)
	}
	if _, isTLS := ss.conn.TLSConnectionState(); !isTLS {
		return nil, ss.reply("AUTH", errEncryptionRequired)
	}
	if ss.current() != nil {
		return nil, ss.reply("AUTH", errAuthInTransaction)
	}
	if ss.s.authFails.blocked(ss.peer.Addr()) {
		ss.log.Warn().Int("code", errAuthThrottled.Code).Msg("smtp auth refused: too many failures from this address")
		ss.hangUp(errAuthThrottled)
		return nil, ss.reply("AUTH", errAuthThrottled)
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(ss.authenticate), nil
	case sasl.Login:
		return &loginServer{authenticate: ss.authenticate}, nil
	}
	return nil, ss.reply("AUTH", smtp.ErrAuthUnknownMechanism)
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
		ss.log.Warn().Int("code", errAuthFailed.Code).Msg("smtp auth failed")
		return ss.reply("AUTH", errAuthFailed)
	}
	ss.authUser = user
	ss.log.Info().Str("auth_user", user).Msg("smtp auth")
	ss.reply("AUTH", authSucceeded) // go-smtp writes its own 235 for nil
	return nil
}

// reply is the one way out for a reply a session decides: every refusal
// of a command, the final reply to DATA or BDAT, and AUTH's outcome. It
// counts e's code once in xarfd_smtp_replies_total and logs it at debug
// level, and returns e for the session method to return. Replies go-smtp
// writes on its own (the banner, 250 to an accepted MAIL or RCPT, syntax
// errors) are not counted; a reply nobody reads (a BDAT reader reset
// under it) does not pass here either.
func (ss *session) reply(cmd string, e *smtp.SMTPError) error {
	ss.s.replied(ss.log, cmd, e)
	return e
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
	nc := ss.nc
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
