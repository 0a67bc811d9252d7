package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
)

var (
	channelName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	// domainName is a hostname in LDH form with at least one label; DNS
	// names of trap domains and zones are never IDNs in U-label form here.
	domainName = regexp.MustCompile(`^(?i)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$`)
)

// validator collects every problem of one file.
type validator struct {
	c    *Config
	errs Errors
}

// bad records a problem with key, on the line where the file writes it
// (or the enclosing key, when the file leaves it out).
func (v *validator) bad(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.Source, Line: v.c.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() error {
	v := &validator{c: c}

	if strings.ContainsAny(c.Hostname, " \t\r\n") || !domainName.MatchString(c.Hostname) {
		v.bad("hostname", "%q is not a valid host name", c.Hostname)
	}
	if c.DataDir == "" {
		v.bad("data_dir", "must not be empty")
	}
	if c.Resolver != "" {
		if _, _, err := net.SplitHostPort(c.Resolver); err != nil {
			v.bad("resolver", "%q: want host:port, such as 127.0.0.1:53", c.Resolver)
		}
	}
	if strings.TrimSpace(c.Sender.Org) == "" {
		v.bad("sender.org", "must not be empty: every XARF report names its sender")
	}
	v.email("sender.contact", c.Sender.Contact, true)
	v.domain("sender.domain", c.Sender.Domain, true)

	if c.RetentionOrphaned.D() <= 0 {
		v.bad("retention_orphaned", "must be positive")
	}

	c.validateSMTP(v)
	c.validateHTTP(v)
	c.validateChannels(v)
	c.validateReporter(v)
	c.validateContacts(v)
	c.validateSubscribers(v)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	c.validateIntel(v)
	c.validateCluster(v)
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

func (c *Config) validateSMTP(v *validator) {
	s := &c.SMTP
	if len(s.Listen) == 0 {
		v.bad("smtp.listen", "needs at least one host:port")
	}
	for i, l := range s.Listen {
		v.hostPort(fmt.Sprintf("smtp.listen[%d]", i), l)
	}
	if s.TLS.Enabled() {
		switch {
		case s.TLS.CertFile == "":
			v.bad("smtp.tls.cert_file", "is required when smtp.tls.key_file is set")
		case s.TLS.KeyFile == "":
			v.bad("smtp.tls.key_file", "is required when smtp.tls.cert_file is set")
		}
	}
	if s.MaxMessageBytes < 1024 {
		v.bad("smtp.max_message_bytes", "%d is too small (at least 1024)", s.MaxMessageBytes)
	}
	if s.MaxRecipients < 1 {
		v.bad("smtp.max_recipients", "must be at least 1")
	}
	if s.ReadTimeout.D() <= 0 {
		v.bad("smtp.read_timeout", "must be positive")
	}
	if s.WriteTimeout.D() <= 0 {
		v.bad("smtp.write_timeout", "must be positive")
	}
	if s.MaxConnections < 1 {
		v.bad("smtp.max_connections", "must be at least 1")
	}
	if s.MaxLineLength < 1000 {
		v.bad("smtp.max_line_length", "%d is below RFC 5321's 1000", s.MaxLineLength)
	}
	if s.MaxConnectionsPerIP < 1 {
		v.bad("smtp.max_connections_per_ip", "must be at least 1")
	}
	if s.ReservedConnections < 0 {
		v.bad("smtp.reserved_connections", "must not be negative")
	}
	if s.SessionTimeout.D() <= 0 {
		v.bad("smtp.session_timeout", "must be positive")
	} else if s.SessionTimeout < s.ReadTimeout {
		v.bad("smtp.session_timeout", "%s is shorter than smtp.read_timeout (%s)", s.SessionTimeout.D(), s.ReadTimeout.D())
	}
	if s.MaxInflightBytes < 0 {
		v.bad("smtp.max_inflight_bytes", "must not be negative (0 = derived from memory)")
	} else if s.MaxInflightBytes > 0 && s.MaxInflightBytes < s.MaxMessageBytes {
		v.bad("smtp.max_inflight_bytes", "%d is below smtp.max_message_bytes (%d): the largest message could never be received", s.MaxInflightBytes, s.MaxMessageBytes)
	}
}

func (c *Config) validateHTTP(v *validator) {
	h := &c.HTTP
	if h.Listen == "" {
		return // API off
	}
	v.hostPort("http.listen", h.Listen)
	if h.MaxBodyBytes < 1024 {
		v.bad("http.max_body_bytes", "%d is too small (at least 1024)", h.MaxBodyBytes)
	}
	for i, n := range h.Hostnames {
		k := fmt.Sprintf("http.hostnames[%d]", i)
		if n == "" || strings.ContainsAny(n, ":/[] \t") || strings.Trim(n, ".") != strings.TrimSuffix(n, ".") {
			v.bad(k, "%q: want a host name without port or scheme, such as xarfd.example.net", n)
		}
	}
	if len(h.Tokens) == 0 && !loopback(h.Listen) {
		v.bad("http.listen", "%s is not a loopback address: configure http.tokens, or listen on 127.0.0.1", h.Listen)
	}
	names := map[string]bool{}
	for i, t := range h.Tokens {
		k := fmt.Sprintf("http.tokens[%d]", i)
		if t.Name == "" {
			v.bad(k+".name", "must not be empty")
		} else if names[t.Name] {
			v.bad(k+".name", "%q is used twice", t.Name)
		}
		names[t.Name] = true
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != 32 {
			v.bad(k+".sha256", "want the 64 hex digits of the token's sha256 (printf %%s TOKEN | sha256sum)")
		}
		if len(t.Scopes) == 0 {
			v.bad(k+".scopes", "needs at least one of read, submit, admin")
		}
		for j, s := range t.Scopes {
			if s != "read" && s != "submit" && s != "admin" {
				v.bad(fmt.Sprintf("%s.scopes[%d]", k, j), "%q: want read, submit or admin", s)
			}
		}
		for j, ch := range t.Channels {
			if c.Channel(ch) == nil {
				v.bad(fmt.Sprintf("%s.channels[%d]", k, j), "no channel is named %q", ch)
			}
		}
	}
}

func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (c *Config) validateChannels(v *validator) {
	if len(c.Channels) == 0 {
		v.bad("channels", "needs at least one channel: without one every recipient is refused")
	}
	names := map[string]bool{}
	owner := map[string]string{} // routing address -> channel
	for i := range c.Channels {
		ch := &c.Channels[i]
		k := fmt.Sprintf("channels[%d]", i)
		if !channelName.MatchString(ch.Name) {
			v.bad(k+".name", "%q: want lower-case letters, digits, - and _ (at most 63)", ch.Name)
		} else if names[ch.Name] {
			v.bad(k+".name", "%q is used twice", ch.Name)
		}
		names[ch.Name] = true
		if ch.Kind != KindARF && ch.Kind != KindTrap {
			v.bad(k+".kind", "%q: want arf or trap", ch.Kind)
		}
		if len(ch.Addresses) == 0 {
			v.bad(k+".addresses", "needs at least one address (user@domain or *@domain)")
		}
		for j, a := range ch.Addresses {
			ak := fmt.Sprintf("%s.addresses[%d]", k, j)
			norm, err := NormalizeRoute(a)
			if err != nil {
				v.bad(ak, "%v", err)
				continue
			}
			if prev, ok := owner[norm]; ok {
				v.bad(ak, "%q already routes to channel %q", a, prev)
				continue
			}
			owner[norm] = ch.Name
			ch.Addresses[j] = norm
		}
		for j, p := range ch.AcceptFrom.DKIMDomains {
			v.domain(fmt.Sprintf("%s.accept_from.dkim_domains[%d]", k, j), p, true)
		}
		if len(ch.AcceptFrom.Users) > 0 {
			if c.SMTP.AuthFile == "" {
				v.bad(k+".accept_from.users", "needs smtp.auth_file")
			}
			if !c.SMTP.TLS.Enabled() {
				v.bad(k+".accept_from.users", "needs smtp.tls: AUTH is offered over TLS only")
			}
		}
		rk := c.renameReporter(v, i)
		v.email(rk+".contact", ch.ReporterOrg.Contact, false)
		v.domain(rk+".domain", ch.ReporterOrg.Domain, false)

		r := &ch.Redact
		if r.Mode != RedactToken && r.Mode != RedactHMAC {
			v.bad(k+".redact.mode", "%q: want token or hmac", r.Mode)
		}
		if r.Mode == RedactHMAC {
			if r.HMACKeyFile == "" {
				v.bad(k+".redact.hmac_key_file", "is required for mode hmac")
			}
		}
		for j, a := range r.Addresses {
			v.email(fmt.Sprintf("%s.redact.addresses[%d]", k, j), a, true)
		}
		for j, d := range r.Domains {
			v.domain(fmt.Sprintf("%s.redact.domains[%d]", k, j), d, true)
		}

		if len(ch.Uses) == 0 {
			v.bad(k+".uses", "needs report, store or both; a channel that neither reports nor stores would drop everything")
		}
		for j, u := range ch.Uses {
			if u != UseReport && u != UseStore && u != UseIntel && u != UseOwn {
				v.bad(fmt.Sprintf("%s.uses[%d]", k, j), "%q: want report, store, intel or own", u)
			}
			if u == UseOwn && len(c.OwnNetworks) == 0 {
				v.bad(fmt.Sprintf("%s.uses[%d]", k, j), "own needs own_networks: cases are about abuse from our own address space")
			}
		}
		for j, p := range ch.ReportTo.Partners {
			v.email(fmt.Sprintf("%s.report_to[%d]", k, j), p, true)
		}
		if ch.Retention.D() <= 0 {
			v.bad(k+".retention", "must be positive")
		}
	}
}

// renameReporter reads channel i's old key "reporter" into reporter_org
// with a warning, refuses a channel that writes both, and returns the key
// the file uses, for errors about its contents.
func (c *Config) renameReporter(v *validator, i int) string {
	ch := &c.Channels[i]
	k := fmt.Sprintf("channels[%d]", i)
	_, written := c.lines[k+".reporter"]
	if !written && ch.LegacyReporter == nil {
		return k + ".reporter_org"
	}
	old := ch.LegacyReporter
	ch.LegacyReporter = nil
	if _, both := c.lines[k+".reporter_org"]; both {
		v.bad(k+".reporter", "is the old name of reporter_org; write only reporter_org")
		return k + ".reporter_org"
	}
	if old != nil {
		ch.ReporterOrg = *old
	}
	c.renamed = append(c.renamed, (&Error{File: c.Source, Line: c.Line(k + ".reporter"), Key: k + ".reporter",
		Msg: "renamed to reporter_org (the XARF reporter organisation, not the top-level reporter); the old key is still read, rename it"}).Error())
	return k + ".reporter"
}

func (c *Config) validateReporter(v *validator) {
	r := &c.Reporter
	if r.Enabled && r.From == "" {
		v.bad("reporter.from", "is required when reporter.enabled is true")
	}
	v.email("reporter.from", r.From, false)
	if r.Format != "xarf" && r.Format != "arf" {
		v.bad("reporter.format", "%q: want xarf or arf", r.Format)
	}
	sh := &r.Smarthost
	if sh.Address != "" {
		v.hostPort("reporter.smarthost.address", sh.Address)
	}
	switch sh.TLS {
	case "starttls", "implicit", "none":
	default:
		v.bad("reporter.smarthost.tls", "%q: want starttls, implicit or none", sh.TLS)
	}
	if sh.Username != "" && sh.PasswordFile == "" {
		v.bad("reporter.smarthost.password_file", "is required with reporter.smarthost.username")
	}
	if sh.Username != "" && sh.TLS == "none" {
		v.bad("reporter.smarthost.tls", "none would send the password in clear; use starttls or implicit")
	}
	d := &r.DKIM
	if set := countSet(d.Domain, d.Selector, d.PrivateKeyFile); set != 0 && set != 3 {
		v.bad("reporter.dkim", "set domain, selector and private_key_file together, or none of them")
	}
	v.domain("reporter.dkim.domain", d.Domain, false)
	if r.MaxRecipientsPerReport < 1 {
		v.bad("reporter.max_recipients_per_report", "must be at least 1")
	}
	if r.PerContactPerHour < 1 {
		v.bad("reporter.per_contact_per_hour", "must be at least 1")
	}
	if r.Retry.First.D() <= 0 {
		v.bad("reporter.retry.first", "must be positive")
	}
	if r.Retry.GiveUpAfter.D() < r.Retry.First.D() {
		v.bad("reporter.retry.give_up_after", "must not be shorter than reporter.retry.first")
	}
	if r.MaxAge.D() <= 0 {
		v.bad("reporter.max_age", "must be positive")
	}
}

func (c *Config) validateContacts(v *validator) {
	ct := &c.Contacts
	for i, s := range ct.Static {
		k := fmt.Sprintf("contacts.static[%d]", i)
		if !s.Network.IsValid() {
			v.bad(k+".network", "is required")
		}
		v.email(k+".email", s.Email, true)
	}
	for i, z := range ct.DNSZones {
		v.domain(fmt.Sprintf("contacts.dns_zones[%d]", i), z, true)
	}
	if ct.RDAP.Enabled {
		u, err := url.Parse(ct.RDAP.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.bad("contacts.rdap.base_url", "%q: want an http(s) URL", ct.RDAP.BaseURL)
		}
	}
	if ct.CacheTTL.D() <= 0 {
		v.bad("contacts.cache_ttl", "must be positive")
	}
}

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

func (v *validator) hostPort(key, s string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.bad(key, "%q: want host:port, such as 127.0.0.1:2525", s)
		return
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil && !domainName.MatchString(host) {
			v.bad(key, "%q: %q is neither an IP address nor a host name", s, host)
		}
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		v.bad(key, "%q: bad port %q", s, port)
	}
}

func (v *validator) email(key, s string, required bool) {
	if s == "" {
		if required {
			v.bad(key, "must not be empty")
		}
		return
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || !strings.Contains(a.Address, "@") {
		v.bad(key, "%q is not a plain email address", s)
	}
}

func (v *validator) domain(key, s string, required bool) {
	if s == "" {
		if required {
			v.bad(key, "must not be empty")
		}
		return
	}
	if !domainName.MatchString(s) {
		v.bad(key, "%q is not a domain name", s)
	}
}

// NormalizeRoute checks a channel routing address ("user@domain" or
// "*@domain") and returns it lower-cased, the form Route compares.
func NormalizeRoute(a string) (string, error) {
	local, domain, ok := strings.Cut(strings.ToLower(strings.TrimSpace(a)), "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", fmt.Errorf("%q: want user@domain or *@domain", a)
	}
	if !domainName.MatchString(domain) {
		return "", fmt.Errorf("%q: %q is not a domain name", a, domain)
	}
	if local != "*" {
		if _, err := mail.ParseAddress("<" + local + "@" + domain + ">"); err != nil {
			return "", fmt.Errorf("%q is not a valid address", a)
		}
	}
	return local + "@" + strings.TrimSuffix(domain, "."), nil
}

// Channel returns the channel named name, or nil.
func (c *Config) Channel(name string) *Channel {
	for i := range c.Channels {
		if c.Channels[i].Name == name {
			return &c.Channels[i]
		}
	}
	return nil
}
