package config

import (
	"fmt"
	"net/url"
	"strings"
)

func (c *Config) validateIntel(v *validator) {
	in := &c.Intel
	used := c.IntelChannels()
	for i, l := range in.DNS.Listen {
		v.hostPort(fmt.Sprintf("intel.dns.listen[%d]", i), l)
	}
	if used || len(in.DNS.Listen) > 0 {
		v.domain("intel.ip_zone", in.IPZone, true)
		v.domain("intel.domain_zone", in.DomainZone, true)
	} else {
		v.domain("intel.ip_zone", in.IPZone, false)
		v.domain("intel.domain_zone", in.DomainZone, false)
	}
	if in.IPZone != "" && in.DomainZone != "" {
		a, b := zoneName(in.IPZone), zoneName(in.DomainZone)
		if a == b || strings.HasSuffix(a, "."+b) || strings.HasSuffix(b, "."+a) {
			v.bad("intel.domain_zone", "%q and intel.ip_zone %q must not contain each other", in.DomainZone, in.IPZone)
		}
	}
	if in.ListAfter.Spamtrap <= 0 {
		v.bad("intel.list_after.spamtrap", "must be positive (hits of spam traps that list an indicator)")
	}
	if in.ListAfter.UserComplaint <= 0 {
		v.bad("intel.list_after.user_complaint", "must be positive (complaints that list an indicator)")
	}
	if in.Window.D() <= 0 {
		v.bad("intel.window", "must be positive")
	}
	if in.ExpireAfter.D() <= 0 {
		v.bad("intel.expire_after", "must be positive")
	}
	for i, d := range in.Allow.Domains {
		v.domain(fmt.Sprintf("intel.allow.domains[%d]", i), d, true)
	}
	for i, p := range in.Allow.Networks {
		if !p.IsValid() {
			v.bad(fmt.Sprintf("intel.allow.networks[%d]", i), "is required")
		}
	}
	if in.Export.Dir != "" && in.Export.Interval.D() < 1e9 {
		v.bad("intel.export.interval", "must be at least 1s")
	}
	if in.LookupURL != "" {
		u, err := url.Parse(in.LookupURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.bad("intel.lookup_url", "%q: want an http(s) URL", in.LookupURL)
		}
	}
}

// zoneName is a zone in the form the DNS server compares: lower case,
// without the root dot.
func zoneName(z string) string { return strings.TrimSuffix(strings.ToLower(z), ".") }
