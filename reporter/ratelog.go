package reporter

import (
	"sync"
	"time"
)

// logLimiter keeps a failing reporter from flooding the log: the first
// event of a key is logged at once, the repeats within every are only
// counted, and the first one after every is logged with that count. A key
// names a kind of failure (what failed and the class of its error), not an
// entry, so that ten thousand entries failing the same way make one line
// per interval.
type logLimiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*limitState
}

type limitState struct {
	logged     time.Time
	suppressed int
}

func newLogLimiter(every time.Duration, now func() time.Time) *logLimiter {
	return &logLimiter{every: every, now: now, keys: map[string]*limitState{}}
}

// allow says whether an event of key is to be logged now, and how many
// of its kind were suppressed since the last one logged.
func (l *logLimiter) allow(key string) (bool, int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.keys[key]
	if st == nil {
		if len(l.keys) >= 1024 {
			l.sweep(now)
		}
		l.keys[key] = &limitState{logged: now}
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

// sweep forgets keys quiet for a whole interval; their suppressed counts
// are dropped, which loses a number, not a kind of failure (the next event
// of the key is logged).
func (l *logLimiter) sweep(now time.Time) {
	for k, st := range l.keys {
		if now.Sub(st.logged) >= l.every {
			delete(l.keys, k)
		}
	}
}
