package smtpd

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xarfd/xarfd/config"
)

// limits is everything the server derives from the smtp section of the
// configuration to protect itself: the DATA budget, the connection caps
// and the timeouts. It lives in one value so that a reload can build a
// new one and swap it in; sessions and connections keep the one they
// started with (their reservations and slots go back where they came
// from).
type limits struct {
	budget       *budget
	inflightFrom string        // where the budget's size came from
	inflightWait time.Duration // how long a session waits for room in budget

	conns          *connLimiter
	readTimeout    time.Duration
	sessionTimeout time.Duration
}

func newLimits(cfg *config.Config) *limits {
	inflight, from := InflightBudget(cfg)
	return &limits{
		budget:       newBudget(inflight),
		inflightFrom: from,
		inflightWait: inflightWait,
		conns: newConnLimiter(cfg.SMTP.MaxConnections, cfg.SMTP.MaxConnectionsPerIP,
			cfg.SMTP.ReservedConnections, acceptNetworks(cfg)),
		readTimeout:    cfg.SMTP.ReadTimeout.D(),
		sessionTimeout: cfg.SMTP.SessionTimeout.D(),
	}
}

// acceptNetworks lists every channel's accept_from.networks: the peers
// the reserve is for.
func acceptNetworks(cfg *config.Config) []netip.Prefix {
	var trusted []netip.Prefix
	for _, ch := range cfg.Channels {
		for _, p := range ch.AcceptFrom.Networks {
			trusted = append(trusted, p.Prefix)
		}
	}
	return trusted
}

// connLimiter admits connections: at most max from anybody, max+reserve
// when the peer is in a channel's accept_from.networks (the feeds the
// operator named keep being served while strangers fill max), and never
// more than perIP from one IPv4 address or IPv6 /64. It is safe for
// concurrent use.
type connLimiter struct {
	max, perIP, reserve int
	// trusted changes with the channels at a reload (setTrusted); with
	// none, nobody can take the reserve.
	trusted atomic.Pointer[[]netip.Prefix]

	mu    sync.Mutex
	open  int
	perKy map[netip.Prefix]int
}

func newConnLimiter(max, perIP, reserve int, trusted []netip.Prefix) *connLimiter {
	l := &connLimiter{max: max, perIP: perIP, reserve: reserve, perKy: map[netip.Prefix]int{}}
	l.setTrusted(trusted)
	return l
}

// setTrusted makes trusted the networks that may take the reserve from
// the next connection on.
func (l *connLimiter) setTrusted(trusted []netip.Prefix) { l.trusted.Store(&trusted) }

// Why a connection was refused, for the log (the client is told the
// same generic 421 either way).
const (
	refusedTotal = "max_connections"
	refusedPerIP = "max_connections_per_ip"
)

// admit takes a slot for a peer at ip; ok false says which cap refused
// it. release gives the slot back; call it exactly once.
func (l *connLimiter) admit(ip netip.Addr) (release func(), refused string) {
	ip = ip.Unmap()
	key := failKey(ip)
	limit := l.max
	if l.reserve > 0 && l.isTrusted(ip) {
		limit += l.reserve
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perKy[key] >= l.perIP {
		return nil, refusedPerIP
	}
	if l.open >= limit {
		return nil, refusedTotal
	}
	l.open++
	l.perKy[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.open--
			if l.perKy[key]--; l.perKy[key] <= 0 {
				delete(l.perKy, key)
			}
		})
	}, ""
}

func (l *connLimiter) isTrusted(ip netip.Addr) bool {
	for _, p := range *l.trusted.Load() {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// counts returns the open connections and the number of peer networks.
func (l *connLimiter) counts() (open, peers int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, len(l.perKy)
}

// peerAddr is the IP of a connection's remote end; the zero Addr when it
// is not TCP/IP (which then counts as one peer).
func peerAddr(c net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
