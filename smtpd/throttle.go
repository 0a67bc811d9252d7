package smtpd

import (
	"net/netip"
	"sync"
	"time"
)

// Defaults of the AUTH failure limit (no configuration key: see
// docs/auth.md). Five wrong passwords from one address (one /64 for IPv6,
// where a host has a whole prefix) in ten minutes lock that address out of
// AUTH until ten minutes after its first failure.
const (
	authFailMax     = 5
	authFailWindow  = 10 * time.Minute
	authFailEntries = 16384 // about 1 MiB at most
)

// failLimiter counts failed AUTH attempts per peer network in fixed
// windows. Its memory is bounded: when full it forgets expired entries
// first, then the oldest one. It is safe for concurrent use.
type failLimiter struct {
	max     int
	window  time.Duration
	entries int
	now     func() time.Time

	mu sync.Mutex
	m  map[netip.Prefix]*failCount
}

type failCount struct {
	n     int
	start time.Time
}

func newFailLimiter(max int, window time.Duration, entries int) *failLimiter {
	return &failLimiter{max: max, window: window, entries: entries, now: time.Now, m: map[netip.Prefix]*failCount{}}
}

// failKey is the address for IPv4 and its /64 for IPv6.
func failKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// blocked reports whether ip has used up its failures.
func (l *failLimiter) blocked(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.m[failKey(ip)]
	if c == nil {
		return false
	}
	if l.now().Sub(c.start) >= l.window {
		delete(l.m, failKey(ip))
		return false
	}
	return c.n >= l.max
}

// fail counts one failure of ip.
func (l *failLimiter) fail(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := failKey(ip)
	c := l.m[k]
	if c != nil && now.Sub(c.start) >= l.window {
		c = nil
	}
	if c == nil {
		if len(l.m) >= l.entries {
			l.evict(now)
		}
		c = &failCount{start: now}
		l.m[k] = c
	}
	c.n++
}

// evict makes room for one entry; it runs only when the table is full.
func (l *failLimiter) evict(now time.Time) {
	var oldest netip.Prefix
	var oldestStart time.Time
	for k, c := range l.m {
		if now.Sub(c.start) >= l.window {
			delete(l.m, k)
			continue
		}
		if oldestStart.IsZero() || c.start.Before(oldestStart) {
			oldest, oldestStart = k, c.start
		}
	}
	if len(l.m) >= l.entries {
		delete(l.m, oldest)
	}
}

// size is the number of tracked networks.
func (l *failLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
