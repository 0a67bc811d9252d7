package smtpd

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/lograte"
	"github.com/xarfd/xarfd/store"
)

// refusingReplicator is a cluster without quorum: every commit fails as
// cluster.Node.Commit's does.
type refusingReplicator struct{}

func (refusingReplicator) Commit([]store.Entry) ([]bool, error) {
	return nil, fmt.Errorf("publishing record: the stream did not acknowledge the record: %w: %w", store.ErrCommit, errors.New("nats: timeout"))
}

// clock is a settable time for the log limiter.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestCommitFailuresLoggedOncePerMinute(t *testing.T) {
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var cfg *config.Config
	ts := startServerWith(t, testConfig, func(c *config.Config) { cfg = c }, func(s *Server) {
		in, err := ingest.New(cfg, nil, ingest.Options{Replicator: refusingReplicator{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(cfg, in, nil, nil); err != nil {
			t.Fatal(err)
		}
		s.commitFails = lograte.New(lograte.Every, clk.Now)
	})
	send := func(n int) {
		c := dial(t, ts.addr)
		c.greet()
		for i := range n {
			code, text := c.message("sender@origin.example", []string{"fbl@test.example"}, fmt.Sprintf("Subject: %d\r\n\r\nno quorum", i))
			if code != 451 {
				t.Fatalf("message %d without quorum: %d %s, want 451", i, code, text)
			}
		}
		c.cmd(221, "QUIT")
	}
	lines := func() []string {
		var out []string
		for l := range strings.Lines(ts.logs.String()) {
			if strings.Contains(l, "storing message failed") {
				out = append(out, l)
			}
		}
		return out
	}

	const n = 20
	send(n)
	got := lines()
	if len(got) != 1 {
		t.Fatalf("%d failed commits made %d log lines, want 1:\n%s", n, len(got), strings.Join(got, ""))
	}
	if !strings.Contains(got[0], `"repeated":0`) || !strings.Contains(got[0], "did not acknowledge") {
		t.Errorf("first line: %s", got[0])
	}

	clk.Add(lograte.Every)
	send(1)
	got = lines()
	if len(got) != 2 {
		t.Fatalf("after a minute: %d lines, want 2:\n%s", len(got), strings.Join(got, ""))
	}
	if want := fmt.Sprintf(`"repeated":%d`, n-1); !strings.Contains(got[1], want) {
		t.Errorf("second line lacks %s: %s", want, got[1])
	}
}

// tooLargeReplicator is a cluster whose record of the message would
// exceed the NATS servers' max_payload, as cluster.Node.Commit refuses it.
type tooLargeReplicator struct{}

func (tooLargeReplicator) Commit([]store.Entry) ([]bool, error) {
	return nil, fmt.Errorf("publishing record: 70000000 bytes, the NATS servers take at most 67107840: %w", ingest.ErrTooLarge)
}

// A record too large for the cluster is a permanent 552 5.3.4, not the
// 451 a sender would retry for ever; the session goes on.
func TestRecordTooLargeIs552(t *testing.T) {
	var cfg *config.Config
	ts := startServerWith(t, testConfig, func(c *config.Config) { cfg = c }, func(s *Server) {
		in, err := ingest.New(cfg, nil, ingest.Options{Replicator: tooLargeReplicator{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(cfg, in, nil, nil); err != nil {
			t.Fatal(err)
		}
	})
	c := dial(t, ts.addr)
	c.greet()
	for i := range 2 {
		code, text := c.message("sender@origin.example", []string{"fbl@test.example"}, fmt.Sprintf("Subject: %d\r\n\r\nbig", i))
		if code != 552 || !strings.HasPrefix(text, "5.3.4 ") || strings.Contains(text, "NATS") || strings.Contains(text, "bytes") {
			t.Fatalf("message %d: %d %s, want 552 5.3.4 with a generic text", i, code, text)
		}
	}
	c.cmd(221, "QUIT")
}
