package store

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A store whose commits fail says so in Health with a fixed phrase, and
// recovers by itself (through its probe) once commits succeed again,
// without any other write.
func TestHealthFollowsCommits(t *testing.T) {
	var full atomic.Bool
	s, err := Open(t.TempDir(), Options{ProbeInterval: 10 * time.Millisecond, FaultCommit: func() error {
		if full.Load() {
			return fmt.Errorf("write /secret/path/xarfd.db: %w", syscall.ENOSPC)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h := s.Health(); !h.OK {
		t.Fatalf("fresh store: %+v", h)
	}
	full.Store(true)
	m := msg(t, "trap")
	if err := s.Put([]Entry{{Message: m, Raw: []byte("x")}}); !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrCommit) {
		t.Fatalf("Put on a full disk: %v", err)
	}
	h := s.Health()
	if h.OK || h.Reason != "store cannot commit: disk full" || strings.Contains(h.Reason, "/secret") {
		t.Fatalf("after a failed commit: %+v", h)
	}
	full.Store(false)
	for deadline := time.Now().Add(10 * time.Second); !s.Health().OK; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still unhealthy after the disk came back: %+v", s.Health())
		}
	}
	// The message that failed was not stored; a new one is.
	if _, err := s.Message(m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed Put left a record: %v", err)
	}
	if err := s.Put([]Entry{{Message: msg(t, "trap"), Raw: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
}

// An operation's own error (not found, a refused transition) says
// nothing about the disk.
func TestHealthIgnoresOperationErrors(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Quarantine(ID{1}, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if h := s.Health(); !h.OK {
		t.Fatalf("%+v", h)
	}
}
