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
	// errBadPeer: the peer address is not TCP/IP (cannot route policy).
	errBadPeer = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot determine peer address"}
)
