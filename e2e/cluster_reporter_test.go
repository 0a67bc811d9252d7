package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/store"
)

// TestClusterSendsEachReportOnce runs three real binaries as one cluster
// with the reporter enabled and a real Mailpit as the smarthost. Every
// node holds every outbox entry; trap hits sent to all three nodes each
// reach Mailpit exactly once, every node ends with every entry sent,
// and each entry that a node did not send itself names the node that
// did.
func TestClusterSendsEachReportOnce(t *testing.T) {
	mp := startMailpit(t)
	ports := clustertest.FreePorts(t, 3)
	var (
		nodes []*daemon
		bases []string
	)
	for i := range 3 {
		dir := t.TempDir()
		yaml := apiConfig() + fmt.Sprintf(`
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1s, give_up_after: 1h}
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@desk.e2e.example}]
`, mp.smtp) + clustertest.YAML(fmt.Sprintf("mx%d", i+1), ports[i], ports, 3, filepath.Join(dir, "nats"))
		d := startDaemon(t, dir, "-config", writeConfig(t, dir, yaml))
		nodes = append(nodes, d)
		bases = append(bases, httpAddr(t, d))
	}
	for i, base := range bases {
		clustertest.Eventually(t, 90*time.Second, fmt.Sprintf("node %d healthy", i+1), func() string {
			r := apiDo(t, "GET", base+"/healthz", "", "", nil)
			if r.code != 200 || !strings.Contains(string(r.body), `"stream_leader":`) {
				return fmt.Sprintf("%d %s", r.code, r.body)
			}
			return ""
		})
	}

	const rounds = 3
	want := map[string]bool{}
	for round := range rounds {
		for i, d := range nodes {
			subject := fmt.Sprintf("cluster report %d-%d", round, i)
			body := spamHit(e2eOrigin2, "t@trap.e2e.example", subject, "distinct body "+subject)
			var ids []store.ID
			clustertest.Eventually(t, 30*time.Second, "250 for "+subject, func() string {
				var err error
				if ids, err = send(d.addr, "bounce@spam.example", []string{"t@trap.e2e.example"}, body); err != nil {
					if strings.Contains(err.Error(), "451") {
						return err.Error()
					}
					t.Fatalf("send %s: %v", subject, err)
				}
				return ""
			})
			want[ids[0].String()] = true
		}
	}
	n := len(want)

	// Every node records every entry sent: by itself, or by the node it
	// names (an entry waiting for another node's claim settles within a
	// minute).
	sentBy := map[string]map[string]string{} // report id -> node -> sent_by
	for i, base := range bases {
		node := fmt.Sprintf("mx%d", i+1)
		clustertest.Eventually(t, 150*time.Second, node+" records all sent", func() string {
			r := apiDo(t, "GET", base+"/api/v1/outbox?status=sent", e2eRead, "", nil)
			var p outboxPage
			if r.code != 200 || json.Unmarshal(r.body, &p) != nil {
				return fmt.Sprintf("%d %s", r.code, r.body)
			}
			got := 0
			for _, e := range p.Entries {
				if want[e.ID.String()] {
					got++
				}
			}
			if got != n {
				return fmt.Sprintf("%d of %d sent", got, n)
			}
			for _, e := range p.Entries {
				if sentBy[e.ID.String()] == nil {
					sentBy[e.ID.String()] = map[string]string{}
				}
				sentBy[e.ID.String()][node] = e.SentBy
			}
			return ""
		})
	}

	arrived := map[string]int{}
	for _, m := range mp.messages(t) {
		id, _, _ := strings.Cut(strings.TrimPrefix(m.MessageID, "xarfd."), "@")
		arrived[id]++
	}
	for id := range want {
		if arrived[id] != 1 {
			t.Errorf("report %s arrived %d times", id, arrived[id])
		}
		// One node sent it (sent_by empty there); the two others name it.
		var sender string
		for node, by := range sentBy[id] {
			if by == "" {
				if sender != "" {
					t.Errorf("report %s: both %s and %s say they sent it", id, sender, node)
				}
				sender = node
			}
		}
		for node, by := range sentBy[id] {
			if by != "" && by != sender {
				t.Errorf("report %s: %s names %q as sender, the sender is %q", id, node, by, sender)
			}
		}
	}
	if len(arrived) != n {
		t.Errorf("mailpit holds reports %v, want the %d sent", arrived, n)
	}
}
