package store

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
)

// Health is whether the store can commit, as its last commit found.
type Health struct {
	OK bool
	// Reason says why not, in words fit for a client: a fixed phrase,
	// never an error's text (which holds paths).
	Reason string
	// Since is when the current state began.
	Since time.Time
}

// DefaultProbeInterval is how often a store that cannot commit tries a
// probe commit, so that it notices on its own when the disk is back.
const DefaultProbeInterval = 2 * time.Second

// probeIdle: a healthy store that committed nothing for this long
// commits a probe, so that a disk that failed while the daemon was idle
// shows in /healthz before the next message meets it. Two fsyncs a
// minute or so cost nothing.
const probeIdle = 30 * time.Second

var keyProbe = []byte("probe")

// health is the committer's view of the disk.
type health struct {
	mu   sync.Mutex
	err  error // the last commit's own error; nil when it succeeded
	at   time.Time
	last time.Time // the last commit, failed or not
}

func (h *health) set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	h.last = now
	if (err == nil) != (h.err == nil) || h.at.IsZero() {
		h.at = now
	}
	h.err = err
}

// Health reports whether the last commit succeeded, and if not why.
// Ordinary commits update it; while it is bad, a probe commit every
// Options.ProbeInterval lets it recover without traffic.
func (s *Store) Health() Health {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if s.health.err == nil {
		return Health{OK: true, Since: s.health.at}
	}
	return Health{Reason: "store cannot commit: " + commitReason(s.health.err), Since: s.health.at}
}

// commitReason names the cause of a failed commit in a fixed phrase.
func commitReason(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "disk full"
	case errors.Is(err, syscall.EDQUOT):
		return "disk quota exceeded"
	case errors.Is(err, syscall.EROFS):
		return "file system is read-only"
	case errors.Is(err, syscall.EIO):
		return "I/O error"
	case errors.Is(err, ErrDamaged):
		return "database file damaged"
	case errors.Is(err, bbolt.ErrDatabaseNotOpen), errors.Is(err, ErrClosed):
		return "closed"
	}
	return "write failed"
}

// prober commits a probe while the store is unhealthy, or idle for
// probeIdle, until stop is closed.
func (s *Store) prober(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.health.mu.Lock()
		due := s.health.err != nil || time.Since(s.health.last) >= probeIdle
		s.health.mu.Unlock()
		if due {
			now := time.Now().UTC().AppendFormat(nil, time.RFC3339Nano)
			// The result reaches Health through commitBatch.
			_ = s.Commit(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyProbe, now) })
		}
	}
}
