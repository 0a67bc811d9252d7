package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/store"
)

// TestClusterThreeNodes runs three real xarfd binaries as one cluster
// (embedded NATS servers routed to each other on 127.0.0.1), sends SMTP
// to each, and reads every report, byte for byte the same, through the
// API of every node; node 3's live stream shows each report once.
// Failover under load is e2e/cluster_failover_test.go's.
func TestClusterThreeNodes(t *testing.T) {
	ports := clustertest.FreePorts(t, 3)
	var nodes []*daemon
	var bases []string
	for i := range 3 {
		dir := t.TempDir()
		yaml := apiConfig() + clustertest.YAML(fmt.Sprintf("mx%d", i+1), ports[i], ports, 3, filepath.Join(dir, "nats"))
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
	if line := waitLog(t, nodes[0], "xarfd started", 0); !strings.Contains(line, `"cluster":"node mx1, 3 replicas, sync always, embedded NATS server mx1"`) {
		t.Errorf("start summary without the cluster: %s", line)
	}
	events := openStream(t, bases[2], "", e2eRead)

	var ids []store.ID
	for round := range 2 {
		for i, d := range nodes {
			ids = append(ids, sendCluster(t, d.addr, fmt.Sprintf("cluster-%d-%d", round, i)))
		}
	}
	for _, id := range ids {
		var want []byte
		for i, base := range bases {
			var r apiReply
			clustertest.Eventually(t, 60*time.Second, fmt.Sprintf("report %s on node %d", id, i+1), func() string {
				r = apiDo(t, "GET", base+"/api/v1/reports/"+id.String(), e2eRead, "", nil)
				if r.code != 200 {
					return fmt.Sprintf("%d %s", r.code, r.body)
				}
				return ""
			})
			ev := apiDo(t, "GET", base+"/api/v1/reports/"+id.String()+"/evidence", e2eRead, "", nil)
			if ev.code != 200 || bytes.Contains(ev.body, []byte("victim@trap")) {
				t.Fatalf("evidence of %s on node %d: %d %s", id, i+1, ev.code, ev.body)
			}
			got := append(append([]byte(nil), r.body...), ev.body...)
			if want == nil {
				want = got
			} else if !bytes.Equal(got, want) {
				t.Errorf("report %s differs between node 1 and node %d:\n%s\n%s", id, i+1, want, got)
			}
		}
	}

	// Every report once on node 3's live stream, whichever node took it:
	// a marker sent last arrives after them (one consumer, stream order).
	marker := sendCluster(t, nodes[0].addr, "cluster-marker")
	seen := map[string]int{}
	timeout := time.After(30 * time.Second)
	for seen[marker.String()] == 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			seen[ev.id]++
		case <-timeout:
			t.Fatalf("marker %s not on node 3's stream within 30s; seen %v", marker, seen)
		}
	}
	for _, id := range ids {
		if n := seen[id.String()]; n != 1 {
			t.Errorf("report %s on node 3's stream %d times, want once", id, n)
		}
	}

	// Without a quorum, node 1 cannot have a record acknowledged: 451,
	// never 250, and /healthz says why.
	nodes[1].stop()
	nodes[2].stop()
	_, err := send(nodes[0].addr, "spammer@origin.example", []string{"victim@trap.e2e.example"}, trapMessage("cluster-no-quorum"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) ||
		strings.Contains(se.Message, "nats") || strings.Contains(se.Message, "stream") {
		t.Errorf("send without quorum: %v, want 451 4.3.0 with a generic text", err)
	}
	clustertest.Eventually(t, 30*time.Second, "node 1 unhealthy without quorum", func() string {
		r := apiDo(t, "GET", bases[0]+"/healthz", "", "", nil)
		if r.code != 503 || !strings.Contains(string(r.body), `"reason":"cluster: `) {
			return fmt.Sprintf("%d %s", r.code, r.body)
		}
		return ""
	})
}

// sendCluster sends a trap hit and returns its id; a 4xx (the cluster
// electing a leader) is retried as an MTA would.
func sendCluster(t *testing.T, addr, subject string) store.ID {
	t.Helper()
	var ids []store.ID
	clustertest.Eventually(t, 30*time.Second, "250 for "+subject, func() string {
		var err error
		ids, err = send(addr, "spammer@origin.example", []string{"victim@trap.e2e.example"}, trapMessage(subject))
		if err != nil {
			if strings.Contains(err.Error(), "451") {
				return err.Error()
			}
			t.Fatalf("send %s: %v", subject, err)
		}
		return ""
	})
	if len(ids) != 1 {
		t.Fatalf("send %s: ids %v", subject, ids)
	}
	return ids[0]
}

// TestCheckConfigCluster: check-config prints the effective cluster
// block with its defaults, and refuses a bad one naming file, line, key.
func TestCheckConfigCluster(t *testing.T) {
	dir := t.TempDir()
	good := writeConfig(t, dir, baseConfig+`
cluster:
  node: mx1
  nats: {embedded: {cluster_listen: "127.0.0.1:6222", routes: ["nats://127.0.0.1:6223"]}}
`)
	code, out, stderr := runXarfd(t, "check-config", "-config", good)
	if code != 0 || !strings.Contains(out, "replicas: 3") || !strings.Contains(out, "sync: always") ||
		!strings.Contains(out, "store_dir: "+filepath.Join(dir, "data", "nats")) {
		t.Errorf("check-config: exit %d\n%s\n%s", code, out, stderr)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(baseConfig+`
cluster:
  node: mx1
  sync: sometimes
  nats: {url: "nats://127.0.0.1:4222", password_file: `+filepath.Join(dir, "none")+`, user: x}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runXarfd(t, "check-config", "-config", bad)
	for _, want := range []string{bad + ":18: cluster.sync: \"sometimes\": want always or default"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("check-config: exit %d, want 1 and %q in:\n%s", code, want, stderr)
		}
	}
}
