package smtpd

import (
	"net/netip"
	"strings"

	"github.com/xarfd/xarfd/config"
)

// Router maps a recipient to its channel: an exact address wins over a
// "*@domain" route. Matching is case-insensitive in both parts; RFC 5321
// lets the local part be case-sensitive, but no feed relies on that and
// providers do change case.
type Router struct {
	exact  map[string]*config.Channel
	domain map[string]*config.Channel
}

// NewRouter indexes the channels' addresses, which config has already
// validated and lower-cased.
func NewRouter(chs []config.Channel) *Router {
	r := &Router{exact: map[string]*config.Channel{}, domain: map[string]*config.Channel{}}
	for i := range chs {
		ch := &chs[i]
		for _, a := range ch.Addresses {
			local, domain, _ := strings.Cut(a, "@")
			if local == "*" {
				r.domain[domain] = ch
			} else {
				r.exact[a] = ch
			}
		}
	}
	return r
}

// Route returns the channel for addr, or nil.
func (r *Router) Route(addr string) *config.Channel {
	a := strings.ToLower(strings.TrimSpace(addr))
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || strings.Contains(domain, "@") {
		return nil
	}
	domain = strings.TrimSuffix(domain, ".")
	if ch := r.exact[local+"@"+domain]; ch != nil {
		return ch
	}
	return r.domain[domain]
}

// allowedPeer reports whether ip may send to ch under accept_from.networks.
func allowedPeer(ch *config.Channel, ip netip.Addr) bool {
	if len(ch.AcceptFrom.Networks) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, p := range ch.AcceptFrom.Networks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
