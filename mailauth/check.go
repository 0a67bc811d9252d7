// Package mailauth checks where a message comes from: DKIM verification,
// SPF and iprev through the configured resolver, and the
// Authentication-Results header (RFC 8601) that records all of it. It is
// named apart from the go-msgauth library it builds on; SMTP AUTH users
// are package auth.
//
// Nothing here keeps package-level state: a Checker is made from the
// configuration and passed to the SMTP server.
package mailauth

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
)

// Result values as Authentication-Results writes them (RFC 8601).
const (
	Pass      = "pass"
	Fail      = "fail"
	None      = "none"
	TempError = "temperror"
	PermError = "permerror"
)

// Defaults of a Checker.
const (
	// DefaultTimeout bounds all DNS work for one message: the DKIM key
	// lookups, SPF's up to ten lookups and iprev run at the same time
	// under it.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxSignatures is how many DKIM signatures of one message are
	// verified; the rest are ignored (each costs a DNS lookup and a hash
	// of the body).
	DefaultMaxSignatures = 5
	// maxPTRNames is how many PTR names iprev confirms (RFC 8601 section
	// 3 leaves the limit to us; one per address is the norm).
	maxPTRNames = 5
)

// NewResolver returns a resolver that asks addr (host:port, the
// configuration's resolver key) over UDP and, for truncated answers, TCP;
// with addr empty it is the system's.
func NewResolver(addr string) *net.Resolver {
	if addr == "" {
		return &net.Resolver{}
	}
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}

// Resolver is what the checks look up; *net.Resolver implements it.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Checker runs the DKIM, SPF and iprev checks of a message. The zero
// value is not usable: set Resolver.
type Checker struct {
	Resolver Resolver
	// Timeout bounds the DNS work of one message; zero = DefaultTimeout.
	Timeout time.Duration
	// MaxSignatures caps DKIM verifications; zero = DefaultMaxSignatures.
	MaxSignatures int
	// CheckLocalPeers runs SPF and iprev for loopback, private and
	// link-local peers too. Off, such a peer (a relay of our own network,
	// a local submission) is recorded without asking DNS about it: its
	// SPF result would say nothing, and its PTR is nobody's business
	// outside. Tests turn it on to check 127.0.0.1 against a test server.
	CheckLocalPeers bool
}

// Input is what a message's checks look at.
type Input struct {
	// Raw is the message as received, before anything is added to it.
	Raw      []byte
	PeerIP   netip.Addr
	HELO     string
	MailFrom string // "" for the null reverse-path
	// AuthUser is the SMTP AUTH identity, "" when not authenticated.
	AuthUser string
}

// DKIMResult is the outcome of one signature.
type DKIMResult struct {
	Result string // pass, fail, temperror or permerror
	Reason string // empty on pass
	Domain string // d=, lower case
	// Identifier is the domain of i= ("@sub.example.org"); its local
	// part is left out, as it could name a person.
	Identifier string
}

// Results is what the checks found about one message.
type Results struct {
	AuthUser string
	DKIM     []DKIMResult // empty: no signature
	// DKIMError is set when the header could not be read for signatures.
	DKIMError string
	// TooManySignatures: only the first MaxSignatures were verified.
	TooManySignatures bool

	PeerIP      netip.Addr
	SPF         string // pass, fail, softfail, neutral, none, temperror, permerror
	SPFReason   string
	MailFrom    string
	HELO        string
	IPRev       string // pass, fail, temperror, permerror; none when not checked
	IPRevReason string
}

// Check runs every check at once and returns when all are done or the
// timeout has passed (what did not finish is a temperror).
func (c *Checker) Check(ctx context.Context, in Input) *Results {
	res := &Results{AuthUser: in.AuthUser, PeerIP: in.PeerIP.Unmap(), MailFrom: in.MailFrom, HELO: in.HELO}
	// Most trap hits carry no signature and come from a relay on our own
	// network: then there is nothing to look up, and no goroutine, timer
	// or header parse is spent on every message.
	sig, complete := scanDKIMSignature(in.Raw)
	verify := sig || !complete // a header without its end is reported by the verifier
	remote := c.CheckLocalPeers || public(res.PeerIP)
	if !remote {
		res.SPF, res.SPFReason = None, "peer address is not public"
		res.IPRev, res.IPRevReason = None, "peer address is not public"
		if !verify {
			return res
		}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !remote {
		c.dkim(ctx, in.Raw, res)
		return res
	}
	var wg sync.WaitGroup
	if verify {
		wg.Go(func() { c.dkim(ctx, in.Raw, res) })
	}
	wg.Go(func() { res.SPF, res.SPFReason = c.spf(ctx, res.PeerIP, in.HELO, in.MailFrom) })
	wg.Go(func() { res.IPRev, res.IPRevReason = c.iprev(ctx, res.PeerIP) })
	wg.Wait()
	return res
}

// scanDKIMSignature reports whether the header of raw has a field that
// the DKIM verifier takes for a signature (go-msgauth: the text before
// the first colon, trimmed, equal to DKIM-Signature in any case), and
// whether the header ends with an empty line at all.
func scanDKIMSignature(raw []byte) (sig, complete bool) {
	fields := 0
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = bytes.TrimSuffix(raw[:i], []byte("\r")), raw[i+1:]
		} else {
			raw = nil // a last line without its newline is a field, never the end
		}
		if len(line) == 0 {
			return sig, true
		}
		if fields > 0 && (line[0] == ' ' || line[0] == '\t') {
			continue // a continuation line
		}
		fields++
		name, _, _ := bytes.Cut(line, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(name), []byte("DKIM-Signature")) {
			sig = true
		}
	}
	return sig, false
}

// public reports whether ip is a globally routable unicast address.
func public(ip netip.Addr) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate()
}

func (c *Checker) dkim(ctx context.Context, raw []byte, res *Results) {
	max := c.MaxSignatures
	if max <= 0 {
		max = DefaultMaxSignatures
	}
	opts := &dkim.VerifyOptions{
		MaxVerifications: max,
		LookupTXT: func(name string) ([]string, error) {
			// go-msgauth tells a temporary failure by the *net.DNSError
			// itself (net.Error.Temporary): return it unwrapped.
			return c.Resolver.LookupTXT(ctx, fqdn(name))
		},
	}
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), opts)
	if errors.Is(err, dkim.ErrTooManySignatures) {
		res.TooManySignatures = true
		err = nil
	}
	if err != nil {
		res.DKIMError = "message header could not be read"
		return
	}
	for _, v := range verifs {
		r := DKIMResult{Domain: normDomain(v.Domain)}
		if _, d, ok := strings.Cut(v.Identifier, "@"); ok {
			r.Identifier = "@" + normDomain(d)
		}
		switch {
		case v.Err == nil:
			r.Result = Pass
		case dkim.IsTempFail(v.Err):
			r.Result, r.Reason = TempError, "key unavailable"
		case dkim.IsPermFail(v.Err):
			r.Result, r.Reason = PermError, permReason(v.Err)
		default:
			r.Result, r.Reason = Fail, failReason(v.Err)
		}
		res.DKIM = append(res.DKIM, r)
	}
}

// The reasons are fixed phrases: the library's error texts can carry
// resolver addresses and other details that do not belong in a header.
func failReason(err error) string {
	if strings.Contains(err.Error(), "body hash") {
		return "body hash did not verify"
	}
	return "signature did not verify"
}

func permReason(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "no key for signature"), strings.Contains(s, "no such host"):
		return "no key for signature"
	case strings.Contains(s, "expired"):
		return "signature expired"
	}
	return "invalid signature or key"
}

func (c *Checker) spf(ctx context.Context, ip netip.Addr, helo, from string) (string, string) {
	if from == "" && helo == "" {
		return None, "no sender domain"
	}
	r, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), helo, from,
		spf.WithContext(ctx), spf.WithResolver(c.Resolver))
	reason := ""
	if err != nil && r != spf.Pass {
		switch r {
		case spf.TempError:
			reason = "lookup failed"
		case spf.PermError:
			reason = "invalid record"
		}
	}
	return string(r), reason
}

// iprev is RFC 8601 section 3: the peer's PTR names, each looked up
// forward; pass when one of them leads back to the peer.
func (c *Checker) iprev(ctx context.Context, ip netip.Addr) (string, string) {
	names, err := c.Resolver.LookupAddr(ctx, ip.String())
	if err != nil {
		if temporary(err) {
			return TempError, "PTR lookup failed"
		}
		return Fail, "no PTR record"
	}
	if len(names) == 0 {
		return Fail, "no PTR record"
	}
	tempErr := false
	for _, n := range names[:min(len(names), maxPTRNames)] {
		// n is as LookupAddr gave it: fully qualified from DNS, short
		// from the hosts file (where the forward lookup finds it too).
		addrs, err := c.Resolver.LookupNetIP(ctx, "ip", n)
		if err != nil {
			tempErr = tempErr || temporary(err)
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				return Pass, ""
			}
		}
	}
	if tempErr {
		return TempError, "forward lookup failed"
	}
	return Fail, "PTR name does not resolve to the peer"
}

func temporary(err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTimeout || de.IsTemporary
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func fqdn(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// DomainMatches reports whether d is one of allowed or a subdomain of one.
func DomainMatches(d string, allowed []string) bool {
	d = normDomain(d)
	if d == "" {
		return false
	}
	for _, a := range allowed {
		a = normDomain(a)
		if a != "" && (d == a || strings.HasSuffix(d, "."+a)) {
			return true
		}
	}
	return false
}

// Verdict is the outcome of a DKIM requirement.
type Verdict int

const (
	// Accepted: a valid signature of an allowed domain.
	Accepted Verdict = iota
	// Refused: no such signature, and no lookup failed that could have
	// found one.
	Refused
	// Deferred: no valid signature of an allowed domain, but one of an
	// allowed domain could not be checked for a temporary reason (its key
	// lookup timed out): the sender should try again.
	Deferred
)

// DKIMVerdict decides a channel's accept_from.dkim_domains: Accepted when
// allowed is empty or a valid signature's d= is one of them or below one.
func (r *Results) DKIMVerdict(allowed []string) Verdict {
	if len(allowed) == 0 {
		return Accepted
	}
	v := Refused
	for _, d := range r.DKIM {
		if !DomainMatches(d.Domain, allowed) {
			continue
		}
		switch d.Result {
		case Pass:
			return Accepted
		case TempError:
			v = Deferred
		}
	}
	return v
}

// Header returns the Authentication-Results field (name, value and the
// line ending eol), one method per line, ready to be put on top of the
// message. It names the SMTP AUTH user, the DKIM signers, the envelope
// sender or HELO, and the peer address; no recipient.
func (r *Results) Header(authservID, eol string) string {
	var rs []authres.Result
	if r.AuthUser != "" {
		rs = append(rs, &authres.AuthResult{Value: Pass, Auth: r.AuthUser})
	}
	switch {
	case r.DKIMError != "":
		rs = append(rs, &authres.DKIMResult{Value: PermError, Reason: r.DKIMError})
	case len(r.DKIM) == 0:
		rs = append(rs, &authres.DKIMResult{Value: None})
	}
	for _, d := range r.DKIM {
		rs = append(rs, &authres.DKIMResult{Value: authres.ResultValue(d.Result), Reason: d.Reason, Domain: d.Domain, Identifier: d.Identifier})
	}
	spfRes := &authres.SPFResult{Value: authres.ResultValue(r.SPF), Reason: r.SPFReason}
	if r.MailFrom != "" {
		spfRes.From = r.MailFrom
	} else {
		spfRes.Helo = r.HELO
	}
	rs = append(rs, spfRes)
	if r.PeerIP.IsValid() {
		rs = append(rs, &authres.IPRevResult{Value: authres.ResultValue(r.IPRev), Reason: r.IPRevReason, IP: r.PeerIP.String()})
	}

	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(sanitize(authservID))
	for _, res := range rs {
		// Format one result at a time to fold the field between them.
		one := authres.Format("x", []authres.Result{res})
		b.WriteString(";" + eol + "\t")
		b.WriteString(sanitize(strings.TrimSpace(strings.TrimPrefix(one, "x; "))))
	}
	b.WriteString(eol)
	return b.String()
}

// sanitize keeps a header value on its line: the values come from the
// client (HELO, MAIL FROM, d=) and must not smuggle a line break or a NUL
// into the stored message.
func sanitize(s string) string {
	if !strings.ContainsFunc(s, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		return s
	}
	return strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return '?'
		}
		return c
	}, s)
}

// LineEnding returns the line ending of the message's first line, so that
// a header put on top matches the message: "\n" for a message written
// with bare LF, "\r\n" otherwise.
func LineEnding(raw []byte) string {
	i := bytes.IndexByte(raw, '\n')
	if i > 0 && raw[i-1] != '\r' {
		return "\n"
	}
	if i == 0 {
		return "\n"
	}
	return "\r\n"
}
