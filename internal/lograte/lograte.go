// Package lograte keeps a repeated failure from flooding the log: during
// a network partition or with a full disk every message fails the same
// way, and one line a minute with a count says as much as thousands.
package lograte

import (
	"sync"
	"time"
)

// Every is how often a repeated failure is logged (DESIGN: at most once a
// minute, with a count).
const Every = time.Minute

// maxKeys bounds the kinds remembered; past it the quiet ones are
// forgotten.
const maxKeys = 1024

// Limiter lets the first event of a key through at once, counts the
// repeats within its interval, and lets the first one after the interval
// through with that count. A key names a kind of failure (what failed and
// the class of its error), never a message or a client, so that ten
// thousand messages failing the same way make one line per interval. It
// is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*state
}

type state struct {
	logged     time.Time
	suppressed int
}

// New returns a Limiter of interval every reading the time from now
// (time.Now when nil).
func New(every time.Duration, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{every: every, now: now, keys: map[string]*state{}}
}

// Allow says whether an event of key is to be logged now and, when it
// is, how many events of its kind were suppressed since the last line.
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.keys[key]
	if st == nil {
		if len(l.keys) >= maxKeys {
			l.sweep(now)
		}
		l.keys[key] = &state{logged: now}
		return true, 0
	}
	if now.Sub(st.logged) < l.every {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.logged, st.suppressed = now, 0
	return true, n
}

// sweep forgets keys quiet for a whole interval: their suppressed counts
// are dropped, which loses a number, not a kind of failure (the next
// event of the key is logged).
func (l *Limiter) sweep(now time.Time) {
	for k, st := range l.keys {
		if now.Sub(st.logged) >= l.every {
			delete(l.keys, k)
		}
	}
}
