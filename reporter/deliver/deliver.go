// Package deliver hands outbound mail to the next hop: a smarthost
// (STARTTLS, implicit TLS or none, optional AUTH PLAIN) or the
// recipients' MX hosts, and DKIM-signs it before. It classifies answers
// so that the caller knows what to retry: 5xx is a *PermanentError,
// everything else (4xx, I/O, TLS, timeouts) is temporary.
package deliver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Transmission is one SMTP transaction's outcome.
type Transmission struct {
	// Accepted got a 250 for the message.
	Accepted []string
	// Rejected got a permanent (5xx) answer: never retried.
	Rejected map[string]string
	// Reply is the server's final reply to the message.
	Reply string
	// Host is where the transaction went: the smarthost, or the MX host
	// (the last one tried when none answered); Addr is the address the
	// connection reached, invalid when none did.
	Host string
	Addr netip.Addr
	// Refusal is the last permanent refusal of a recipient, with its
	// codes (Rejected holds each one's text).
	Refusal *smtp.SMTPError
}

// Sender hands a message to the next hop. The reporter and the case
// notifications use it; SMTP is the implementation, tests may put
// another in its place.
type Sender interface {
	// Send delivers msg to rcpts in one transaction; beforeDot, when not
	// nil, runs just before the end of data is sent, and its error
	// aborts the transaction. A *Transmission is returned whenever a
	// host was tried, also with an error: Host and Addr say which.
	Send(ctx context.Context, from string, rcpts []string, msg []byte, beforeDot func() error) (*Transmission, error)
	// Groups splits recipients into the transactions Send takes.
	Groups(rcpts []string) [][]string
}

var _ Sender = (*SMTP)(nil)

// PermanentError is a 5xx answer to the whole transaction.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// SMTP is the Sender that speaks SMTP to the smarthost or to the
// recipients' MX hosts.
type SMTP struct {
	// Smarthost is host:port; empty delivers to MX.
	Smarthost string
	// TLS is starttls, implicit or none (smarthost only).
	TLS                string
	Username, Password string
	// HeloName is our name in EHLO.
	HeloName string
	// Resolver finds MX records.
	Resolver *net.Resolver
	// MXPort is the port MX hosts are reached on (25; tests change it).
	MXPort int
	// TLSConfig is the base TLS configuration (RootCAs for tests).
	TLSConfig *tls.Config
	// DialTimeout, CommandTimeout and DataTimeout bound each step.
	DialTimeout, CommandTimeout, DataTimeout time.Duration
}

// DefaultDataTimeout is the wait for the answer to the final dot (RFC
// 5321 4.5.3.2.6). A cluster's claims must outlast it: it is
// config.ReporterDataTimeout, the floor of cluster.claim_lease.
const DefaultDataTimeout = 10 * time.Minute

// dial connects to addr and notes in t the address it reached.
func (d *SMTP) dial(ctx context.Context, addr string, t *Transmission) (net.Conn, error) {
	// Host names (MX hosts, the smarthost) resolve through the
	// configured resolver too.
	dl := net.Dialer{Timeout: cmp.Or(d.DialTimeout, 30*time.Second), Resolver: d.Resolver}
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err == nil {
		if ap, perr := netip.ParseAddrPort(conn.RemoteAddr().String()); perr == nil {
			t.Addr = ap.Addr().Unmap()
		}
	}
	return conn, err
}

func (d *SMTP) tlsConfig(serverName string, verify bool) *tls.Config {
	c := &tls.Config{}
	if d.TLSConfig != nil {
		c = d.TLSConfig.Clone()
	}
	c.ServerName = serverName
	c.MinVersion = tls.VersionTLS12
	// Opportunistic TLS to MX hosts (RFC 7435): encryption without
	// authentication beats plain text, and most MX certificates do not
	// match their names.
	c.InsecureSkipVerify = !verify
	return c
}

// Send delivers msg from from to rcpts (all of one domain for MX
// delivery; any for the smarthost). beforeDot runs after the message was
// written and before the final "." is sent: once it returns, the server
// may accept the message at any moment. An error is temporary (retry)
// unless it is a *PermanentError.
func (d *SMTP) Send(ctx context.Context, from string, rcpts []string, msg []byte, beforeDot func() error) (*Transmission, error) {
	if d.Smarthost != "" {
		return d.sendVia(ctx, d.Smarthost, true, from, rcpts, msg, beforeDot)
	}
	hosts, err := d.mxHosts(ctx, domainOf(rcpts[0]))
	if err != nil {
		return nil, err
	}
	var (
		errs []error
		last *Transmission
	)
	for _, h := range hosts {
		t, err := d.sendVia(ctx, net.JoinHostPort(h, strconv.Itoa(cmp.Or(d.MXPort, 25))), false, from, rcpts, msg, beforeDot)
		var perm *PermanentError
		if err == nil || errors.As(err, &perm) || isAnswered(err) {
			return t, err
		}
		last = t
		errs = append(errs, fmt.Errorf("%s: %w", h, err))
	}
	return last, errors.Join(errs...)
}

// isAnswered: the server got as far as a reply to DATA; trying the next
// MX could deliver twice.
func isAnswered(err error) bool {
	var a *answeredError
	return errors.As(err, &a)
}

type answeredError struct{ err error }

func (e *answeredError) Error() string { return e.err.Error() }
func (e *answeredError) Unwrap() error { return e.err }

// Groups puts all recipients into one transaction for the smarthost, and
// makes one per domain for MX delivery.
func (d *SMTP) Groups(rcpts []string) [][]string {
	if len(rcpts) == 0 {
		return nil
	}
	if d.Smarthost != "" {
		return [][]string{rcpts}
	}
	var out [][]string
	idx := map[string]int{}
	for _, a := range rcpts {
		dom := domainOf(a)
		if i, ok := idx[dom]; ok {
			out[i] = append(out[i], a)
			continue
		}
		idx[dom] = len(out)
		out = append(out, []string{a})
	}
	return out
}

func domainOf(addr string) string {
	return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
}

// mxHosts returns the MX hosts of domain by preference, or the domain
// itself when it has none (RFC 5321 section 5.1). A null MX (RFC 7505)
// is permanent.
func (d *SMTP) mxHosts(ctx context.Context, domain string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	mxs, err := r.LookupMX(ctx, domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			if _, aerr := r.LookupHost(ctx, domain); aerr == nil {
				return []string{domain}, nil
			}
			return nil, &PermanentError{fmt.Errorf("domain %s has no MX and no address", domain)}
		}
		return nil, fmt.Errorf("MX lookup for %s: %w", domain, err)
	}
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	var hosts []string
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" {
			return nil, &PermanentError{fmt.Errorf("domain %s accepts no mail (null MX)", domain)}
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return []string{domain}, nil
	}
	return hosts, nil
}

// connect opens an SMTP session: the smarthost's TLS mode, or
// opportunistic STARTTLS for MX hosts (falling back to plain text when
// the server offers none or the handshake fails).
func (d *SMTP) connect(ctx context.Context, addr string, smarthost bool, t *Transmission) (*smtp.Client, error) {
	host, _, _ := net.SplitHostPort(addr)
	helo := cmp.Or(d.HeloName, "localhost")
	mode := "starttls"
	if smarthost {
		mode = cmp.Or(d.TLS, "starttls")
	}
	setup := func(c *smtp.Client) {
		c.CommandTimeout = cmp.Or(d.CommandTimeout, 2*time.Minute)
		c.SubmissionTimeout = cmp.Or(d.DataTimeout, DefaultDataTimeout)
	}
	switch mode {
	case "implicit":
		conn, err := d.dial(ctx, addr, t)
		if err != nil {
			return nil, err
		}
		c := smtp.NewClient(tls.Client(conn, d.tlsConfig(host, true)))
		setup(c)
		if err := c.Hello(helo); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	case "none":
		return d.plain(ctx, addr, helo, setup, t)
	}
	conn, err := d.dial(ctx, addr, t)
	if err != nil {
		return nil, err
	}
	c, err := smtp.NewClientStartTLS(conn, d.tlsConfig(host, smarthost))
	if err == nil {
		setup(c)
		if err = c.Hello(helo); err == nil {
			return c, nil
		}
		c.Close()
	}
	if smarthost {
		return nil, fmt.Errorf("STARTTLS with smarthost %s: %w", addr, err)
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 && se.Code != 502 && se.Code != 500 {
		return nil, err
	}
	return d.plain(ctx, addr, helo, setup, t)
}

func (d *SMTP) plain(ctx context.Context, addr, helo string, setup func(*smtp.Client), t *Transmission) (*smtp.Client, error) {
	conn, err := d.dial(ctx, addr, t)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	setup(c)
	if err := c.Hello(helo); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (d *SMTP) sendVia(ctx context.Context, addr string, smarthost bool, from string, rcpts []string, msg []byte, beforeDot func() error) (*Transmission, error) {
	host, _, _ := net.SplitHostPort(addr)
	t := &Transmission{Rejected: map[string]string{}, Host: host}
	c, err := d.connect(ctx, addr, smarthost, t)
	if err != nil {
		return t, classify(err)
	}
	defer c.Close()
	// A cancelled context (shutdown) closes the connection: every
	// blocked read or write returns.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if smarthost && d.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", d.Username, d.Password)); err != nil {
			return t, classify(fmt.Errorf("AUTH PLAIN at %s: %w", addr, err))
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return t, classify(fmt.Errorf("MAIL FROM at %s: %w", addr, err))
	}
	var ok []string
	var tempErr error
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.Code >= 500 {
				t.Rejected[r] = se.Error()
				t.Refusal = se
				continue
			}
			tempErr = errors.Join(tempErr, fmt.Errorf("RCPT TO %s: %w", r, err))
			continue
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		_ = c.Reset()
		if tempErr != nil {
			return t, classify(tempErr)
		}
		return t, nil // every recipient refused permanently
	}
	w, err := c.Data()
	if err != nil {
		return t, classify(fmt.Errorf("DATA at %s: %w", addr, err))
	}
	if _, err := w.Write(msg); err != nil {
		return t, classify(fmt.Errorf("writing message to %s: %w", addr, err))
	}
	if beforeDot != nil {
		if err := beforeDot(); err != nil {
			return t, fmt.Errorf("recording transmission: %w", err)
		}
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return t, classify(fmt.Errorf("end of data at %s: %w", addr, err))
		}
		// No reply: the server may have the message. Another MX now
		// could make two; the entry is retried later, same Message-ID.
		return t, &answeredError{fmt.Errorf("end of data at %s: %w", addr, err)}
	}
	t.Accepted = ok
	t.Reply = fmt.Sprintf("250 %s", resp.StatusText)
	_ = c.Quit()
	if tempErr != nil {
		return t, classify(tempErr) // the rest are retried
	}
	return t, nil
}

// classify turns a 5xx reply into a *PermanentError; everything else
// (4xx, I/O, timeouts, TLS) stays temporary.
func classify(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
		return &PermanentError{err}
	}
	return err
}
