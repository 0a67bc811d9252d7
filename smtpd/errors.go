package smtpd

import "github.com/emersion/go-smtp"

// The replies of INTERFACE.md. Each carries a code, an enhanced code
// (RFC 3463) and a generic text: nothing from inside the daemon, and never
// an address, reaches a client.
var (
	// errUnknownRcpt: no channel routes this address; we are not a relay.
	errUnknownRcpt = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such recipient here"}
	// errSenderNotAllowed: the channel does not accept mail from this peer.
	errSenderNotAllowed = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender not allowed for this recipient"}
	// errLocal: our own fault (store full, I/O); the client retries.
	errLocal = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error, message not accepted; try again later"}
	// errRecordTooLarge: in cluster mode, the record of a message that
	// went to several channels exceeds what the NATS servers take. It
	// would fail alike on every retry, so it is permanent, as go-smtp's
	// own size limit.
	errRecordTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Maximum message size exceeded"}
	// errLineTooLong: a DATA line over smtp.max_line_length (RFC 5321
	// section 4.5.3.1.6 names 500 for it); go-smtp closes the connection
	// after this reply because the rest of the line cannot be skipped.
	errLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
	// errTimeout: the client paused longer than read_timeout inside DATA.
	errTimeout = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout reading message, closing connection"}
	// errBroken: the connection failed while reading DATA.
	errBroken = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 0}, Message: "Connection error reading message"}
	// errShuttingDown: sent to idle sessions when the daemon stops.
	errShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	// errTooManyConns: more than smtp.max_connections sessions.
	errTooManyConns = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections, try again later"}
	// errAuthRequired: the channel takes mail only from SMTP AUTH users and
	// the session has not authenticated (RFC 4954 section 6). Permanent:
	// retrying without credentials cannot succeed.
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	// errAuthFailed: wrong user name or password, or an authorization
	// identity other than the user (RFC 4954 section 6).
	errAuthFailed = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	// errAuthThrottled: the peer failed AUTH too often; the connection is
	// closed after this reply.
	errAuthThrottled = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentication attempts, try again later"}
	// errAuthInTransaction: AUTH after MAIL (RFC 4954 section 4).
	errAuthInTransaction = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "AUTH not permitted during a mail transaction"}
	// errEncryptionRequired: AUTH without TLS (go-smtp refuses it first
	// with 523 5.7.10; this is the second line of defence).
	errEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for requested authentication mechanism"}
	// errSeparateTransaction: a channel that requires DKIM is judged at
	// the end of DATA, where one reply covers every recipient; its
	// recipients therefore never share a transaction with another
	// channel's. The client sends the deferred recipient again in a new
	// transaction (RFC 5321 section 4.5.3.1.10).
	errSeparateTransaction = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients: send this one in a separate transaction"}
	// errNoDKIM: the channel requires a valid DKIM signature of one of its
	// dkim_domains and the message has none.
	errNoDKIM = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender not allowed for this recipient: no valid DKIM signature of an accepted domain"}
	// errDKIMTemp: a signature of an accepted domain could not be checked
	// now (its key lookup timed out): the client retries later.
	errDKIMTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 3}, Message: "Cannot verify the DKIM signature now, try again later"}
	// errNoRoom: the DATA budget (smtp.max_inflight_bytes) stayed full
	// for inflightWait; RFC 3463's 4.3.1 is "mail system full". The
	// client retries later, as for any 4xx.
	errNoRoom = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	// errBadSequence: a command out of order that go-smtp lets through.
	errBadSequence = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Bad sequence of commands"}
	// authSucceeded: what go-smtp answers a successful AUTH with (RFC
	// 4954 section 6); only its code is used, for counting.
	authSucceeded = &smtp.SMTPError{Code: 235, EnhancedCode: smtp.EnhancedCode{2, 7, 0}, Message: "Authentication succeeded"}
	// errBadPeer: the peer address is not TCP/IP (cannot route policy).
	errBadPeer = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot determine peer address"}
)
