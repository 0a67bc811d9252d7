// Package contact finds the abuse desk of an IP address: a static table
// of prefixes from the configuration, then DNS zones that publish abuse
// addresses as TXT records (abuse-contacts.abusix.zone style), then RDAP
// at the regional registries. Answers, including "none", are cached in
// the store so that a busy source network costs one lookup per TTL.
package contact

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"strings"
	"time"
	"unicode"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// Contact sources, as recorded in OutboxEntry.ContactSource.
const (
	SourceStatic   = "static"
	SourceDNS      = "dns"
	SourceRDAP     = "rdap"
	SourcePartners = "partners"
)

// ErrNotFound means every source answered and none named an abuse
// address: a definite answer, cached for the negative TTL.
var ErrNotFound = errors.New("no abuse contact found")

// Cache keeps abuse-contact lookups; *store.Store implements it.
type Cache interface {
	Contact(key string, now time.Time) (*store.CachedContact, bool, error)
	PutContact(key string, c *store.CachedContact) error
}

// Answer is the answer of a lookup.
type Answer struct {
	Emails []string
	// Source is static, dns:<zone> or rdap.
	Source string
}

// Resolver resolves the abuse contact of an address: the static table
// (longest prefix), then the DNS zones in order, then RDAP; the first
// answer wins. Lookups are cached in the store for cache_ttl (negative
// answers for NegativeTTL). A lookup that fails for a transient reason
// (timeout, SERVFAIL, HTTP 5xx) returns that error and caches nothing, so
// it is retried.
type Resolver struct {
	cfg         *config.Contacts
	st          Cache
	dns         *net.Resolver
	rdap        *RDAP
	timeout     time.Duration
	negativeTTL time.Duration
	now         func() time.Time
}

// New builds a resolver; resolver is the DNS server (host:port)
// to ask, empty for the system's; rdap nil skips RDAP. now is the clock
// of the cache's TTLs (nil: time.Now), so that tests can move it.
func New(cfg *config.Contacts, resolver string, st Cache, rdap *RDAP, now func() time.Time) *Resolver {
	neg := min(cfg.CacheTTL.D(), time.Hour)
	if now == nil {
		now = time.Now
	}
	return &Resolver{cfg: cfg, st: st, dns: NewDNSResolver(resolver), rdap: rdap,
		timeout: 10 * time.Second, negativeTTL: neg, now: now}
}

// NewDNSResolver returns a resolver that asks server (host:port), or the
// system's resolver when server is empty.
func NewDNSResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

// Lookup returns the abuse contact of a.
func (c *Resolver) Lookup(ctx context.Context, a netip.Addr) (*Answer, error) {
	a = a.Unmap()
	if ct := c.static(a); ct != nil {
		return ct, nil
	}
	key := "ip:" + a.String()
	if cached, ok, _ := c.st.Contact(key, c.now()); ok {
		if len(cached.Emails) == 0 {
			return nil, ErrNotFound
		}
		return &Answer{Emails: cached.Emails, Source: cached.Source}, nil
	}
	ct, err := c.lookup(ctx, a)
	switch {
	case err == nil:
		_ = c.st.PutContact(key, &store.CachedContact{Emails: ct.Emails, Source: ct.Source, Expires: c.now().Add(c.cfg.CacheTTL.D())})
		return ct, nil
	case errors.Is(err, ErrNotFound):
		_ = c.st.PutContact(key, &store.CachedContact{Expires: c.now().Add(c.negativeTTL)})
	}
	return nil, err
}

func (c *Resolver) static(a netip.Addr) *Answer {
	best := -1
	var out *Answer
	for _, s := range c.cfg.Static {
		if s.Network.Contains(a) && s.Network.Bits() > best {
			best = s.Network.Bits()
			out = &Answer{Emails: []string{s.Email}, Source: SourceStatic}
		}
	}
	return out
}

func (c *Resolver) lookup(ctx context.Context, a netip.Addr) (*Answer, error) {
	var transient error
	for _, zone := range c.cfg.DNSZones {
		emails, err := c.zone(ctx, a, zone)
		if err != nil {
			transient = errors.Join(transient, err)
			continue
		}
		if len(emails) > 0 {
			return &Answer{Emails: emails, Source: SourceDNS + ":" + zone}, nil
		}
	}
	if c.rdap != nil {
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		emails, err := c.rdap.AbuseEmails(rctx, a)
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) {
			transient = errors.Join(transient, err)
		}
		if len(emails) > 0 {
			return &Answer{Emails: emails, Source: SourceRDAP}, nil
		}
	}
	if transient != nil {
		return nil, fmt.Errorf("looking up abuse contact of %s: %w", a, transient)
	}
	return nil, ErrNotFound
}

// zone asks one abuse-contacts zone: TXT records at the reversed address
// under zone, each holding one or more addresses. NXDOMAIN and no TXT are
// "none" (nil, nil); other failures are errors.
func (c *Resolver) zone(ctx context.Context, a netip.Addr, zone string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	name := reverseName(a, zone)
	txts, err := c.dns.LookupTXT(ctx, name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("TXT %s: %w", name, err)
	}
	return parseEmails(strings.Join(txts, " ")), nil
}

// reverseName is a's name under zone in the DNSBL / abuse-contacts style:
// IPv4 octets reversed, IPv6 nibbles reversed, then the zone.
func reverseName(a netip.Addr, zone string) string {
	a = a.Unmap()
	var parts []string
	if a.Is4() {
		b := a.As4()
		for i := 3; i >= 0; i-- {
			parts = append(parts, fmt.Sprint(b[i]))
		}
	} else {
		b := a.As16()
		const hex = "0123456789abcdef"
		for i := 15; i >= 0; i-- {
			parts = append(parts, string(hex[b[i]&0xf]), string(hex[b[i]>>4]))
		}
	}
	return strings.Join(parts, ".") + "." + strings.TrimSuffix(zone, ".")
}

// parseEmails returns the valid, distinct (case-insensitively) addresses
// in s, separated by white space, commas or semicolons; "mailto:" is
// stripped.
func parseEmails(s string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == '"' || unicode.IsSpace(r) }) {
		f = strings.TrimPrefix(strings.TrimPrefix(f, "mailto:"), "MAILTO:")
		if !ValidEmail(f) || seen[strings.ToLower(f)] {
			continue
		}
		seen[strings.ToLower(f)] = true
		out = append(out, f)
	}
	return out
}

// ValidEmail reports whether s is a bare addr-spec with a dotted domain
// and nothing that could inject into a header or an SMTP command.
func ValidEmail(s string) bool {
	if len(s) > 254 || strings.ContainsAny(s, "<>\r\n \t,;\"") {
		return false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	return at > 0 && strings.Contains(s[at+1:], ".")
}
