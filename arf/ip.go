package arf

import (
	"net/netip"
	"strings"
)

// ParseIP normalises an address as found in Source-IP, Received headers or
// Subjects: a trailing "(comment)" is returned separately; brackets, an
// "IPv6:" prefix, an IPv6 zone and a ":port" are removed; IPv4-mapped IPv6
// becomes IPv4. port is 0 when none was attached. cleaned is true when
// anything beyond the comment had to be removed.
func ParseIP(raw string) (addr netip.Addr, port int, comment string, cleaned bool) {
	s := strings.TrimSpace(raw)
	if i := strings.IndexByte(s, '('); i >= 0 {
		comment = strings.TrimSpace(strings.Trim(s[i:], "()"))
		s = strings.TrimSpace(s[:i])
	}
	orig := s
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), 0, comment, false
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), int(ap.Port()), comment, true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
		s = s[5:]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, 0, comment, false
	}
	return a.WithZone("").Unmap(), 0, comment, s != orig || a.Zone() != ""
}

// special lists reserved ranges that netip's predicates do not cover.
var special = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
		"100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// IsPublic reports whether a is a globally routable unicast address: not
// private, loopback, link-local, CGNAT, documentation, benchmarking or
// otherwise reserved. Abuse can only be reported to the owner of such an
// address, so origin inference skips the rest.
func IsPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range special {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
