package reporter

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/bbolt"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

// counting is setup on a store that counts its durable commits.
func counting(t *testing.T, yaml string) (*env, *atomic.Int64) {
	t.Helper()
	cfg, err := config.Parse([]byte(`
hostname: reporter.test
sender: {org: Test Net, contact: abuse@reporter.test, domain: reporter.test}
contacts:
  static: [{network: "`+originNet+`", email: abuse@origin.test}]
`+yaml), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var commits atomic.Int64
	st, err := store.Open(t.TempDir(), store.Options{OnCommit: func(int, time.Duration) { commits.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := New(cfg, st, Options{Logger: zerolog.New(zerolog.NewTestWriter(t)), Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &env{cfg: cfg, st: st, in: in, rep: rep}, &commits
}

// mark returns how many commits n counted up to now. OnCommit runs after
// a commit's callers are told, so it reads n in the commit after an empty
// one: by then the empty one, and all before it, were counted. The
// difference of two marks counts 2 commits of its own.
func mark(t *testing.T, st *store.Store, n *atomic.Int64) int64 {
	t.Helper()
	var v int64
	if err := st.Commit(func(*bbolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(func(*bbolt.Tx) error { v = n.Load(); return nil }); err != nil {
		t.Fatal(err)
	}
	return v
}

// The reporter's durable commits for reports stored before it runs: the
// claim and the settlements are per batch, not per report. Half the hits
// are distinct incidents (dry-run), half repeat one (duplicates). Sending
// adds the delivery's own commits, per report.
func TestCommitsPerReport(t *testing.T) {
	const n = 40
	for _, tc := range []struct {
		name    string
		enabled bool
		want    store.OutboxStatus
		// bound on the reporter's commits: batch steps, plus what each
		// delivered report needs (begin, transmitted, outcome, sent).
		perReport, fixed int64
	}{
		{"dry run", false, store.OutboxDryRun, 0, 12},
		{"sending", true, store.OutboxSent, 4, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDesk(t, nil)
			e, commits := counting(t, trapChannel+smarthostYAML(d.addr, tc.enabled, ""))
			var ids []store.ID
			for i := range n {
				body := "the same spam"
				if i%2 == 0 {
					body = fmt.Sprint("spam number ", i)
				}
				ids = append(ids, e.trapHit(t, "trap", "v@trap.reporter.test", originIP, body))
			}
			before := mark(t, e.st, commits)
			e.run(t, func() bool {
				st := e.statuses(t, ids)
				return st[tc.want] == n/2+1 && st[store.OutboxDuplicate] == n/2-1
			})
			got := mark(t, e.st, commits) - before - 2
			t.Logf("%s: %d reports settled in %d commits (%.2f per report; %d claims, %d loop passes)",
				tc.name, n, got, float64(got)/n, e.rep.claims.Load(), e.rep.iterations.Load())
			bounded(t, "commits", got, tc.fixed+tc.perReport*(n/2+1))
		})
	}
}
