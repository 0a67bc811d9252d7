package api

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

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

func TestCommitFailuresLoggedOncePerMinute(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := newEnv(t, true, nil)
	in, err := ingest.New(e.cfg, e.st, ingest.Options{Validator: fakeValidator{}, Replicator: refusingReplicator{}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Reload(e.cfg, in)
	e.srv.commitFails = lograte.New(lograte.Every, func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	})
	msg := []byte("From: a@spam.example\r\nSubject: x\r\n\r\nbody\r\n")
	submit := func(n int) {
		for i := range n {
			r := e.do("POST", "/api/v1/channels/plain/messages", tokSubmitAll, "message/rfc822", msg)
			if i%2 == 1 {
				r = e.do("POST", "/api/v1/channels/fbl/reports", tokSubmitAll, "application/json", []byte(xarfDoc))
			}
			if r.code != 503 || r.h.Get("Retry-After") == "" || strings.Contains(string(r.body), "nats") {
				t.Fatalf("submission %d without quorum: %d %s", i, r.code, r.body)
			}
		}
	}
	lines := func() []string {
		var out []string
		for l := range strings.Lines(e.log.String()) {
			if strings.Contains(l, `"level":"error"`) {
				out = append(out, l)
			}
		}
		return out
	}
	const n = 10 // 15 submissions: 10 messages, 5 reports
	submit(n)
	got := lines()
	if len(got) != 1 {
		t.Fatalf("%d failed submissions made %d error lines, want 1:\n%s", n+n/2, len(got), strings.Join(got, ""))
	}
	mu.Lock()
	now = now.Add(lograte.Every)
	mu.Unlock()
	submit(1)
	got = lines()
	if len(got) != 2 || !strings.Contains(got[1], fmt.Sprintf(`"repeated":%d`, n+n/2-1)) {
		t.Fatalf("after a minute: want a second line with the count %d:\n%s", n+n/2-1, strings.Join(got, ""))
	}
}

// tooLargeReplicator refuses every record as too large for the cluster.
type tooLargeReplicator struct{}

func (tooLargeReplicator) Commit([]store.Entry) ([]bool, error) {
	return nil, fmt.Errorf("publishing record: 70000000 bytes, the NATS servers take at most 67107840: %w", ingest.ErrTooLarge)
}

// A record too large for the cluster is 413, permanent, not the 503 a
// client would retry.
func TestRecordTooLargeIs413(t *testing.T) {
	e := newEnv(t, true, nil)
	in, err := ingest.New(e.cfg, e.st, ingest.Options{Validator: fakeValidator{}, Replicator: tooLargeReplicator{}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Reload(e.cfg, in)
	r := e.do("POST", "/api/v1/channels/plain/messages", tokSubmitAll, "message/rfc822", []byte("From: a@spam.example\r\nSubject: x\r\n\r\nbody\r\n"))
	if r.code != 413 || r.h.Get("Retry-After") != "" || strings.Contains(string(r.body), "NATS") {
		t.Fatalf("too large for the cluster: %d %s (Retry-After %q), want 413", r.code, r.body, r.h.Get("Retry-After"))
	}
}
