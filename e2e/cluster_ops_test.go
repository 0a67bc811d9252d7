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

// TestClusterOperatorActions runs three real binaries as one cluster: an
// operator's delisting through node 1's API holds on nodes 2 and 3 (their
// API and their DNS zones), a retry through node 2's on nodes 1 and 3;
// without a quorum an action (a delisting, a cancel) is refused with
// 503, Retry-After and a generic text, and nothing changes on the node.
func TestClusterOperatorActions(t *testing.T) {
	ports := clustertest.FreePorts(t, 3)
	// The desk never answers: the report stays pending, retried in an hour.
	desk := freePort(t)
	var nodes []*daemon
	var bases, dns []string
	for i := range 3 {
		dir := t.TempDir()
		yaml := intelConfig() + fmt.Sprintf(`
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1h, give_up_after: 24h}
contacts:
  static: [{network: "45.142.120.0/24", email: abuse@desk.e2e.example}]
`, desk) + clustertest.YAML(fmt.Sprintf("mx%d", i+1), ports[i], ports, 3, filepath.Join(dir, "nats"))
		d := startDaemon(t, dir, "-config", writeConfig(t, dir, yaml))
		nodes = append(nodes, d)
		bases = append(bases, httpAddr(t, d))
		dns = append(dns, dnsAddr(t, d))
	}
	for i, base := range bases {
		clustertest.Eventually(t, 90*time.Second, fmt.Sprintf("node %d healthy", i+1), func() string {
			if r := apiDo(t, "GET", base+"/healthz", "", "", nil); r.code != 200 {
				return fmt.Sprintf("%d %s", r.code, r.body)
			}
			return ""
		})
	}
	var id string
	clustertest.Eventually(t, 60*time.Second, "250 from node 1", func() string {
		ids, err := send(nodes[0].addr, "bounce@spam-domain.biz", []string{"victim@honey.catchall-mail.com"}, []byte(intelTrapHit))
		if err != nil {
			if strings.Contains(err.Error(), "451") {
				return err.Error()
			}
			t.Fatal(err)
		}
		id = ids[0].String()
		return ""
	})
	const ipName = "11.120.142.45.bl.e2e.example"
	for i := range nodes {
		clustertest.Eventually(t, 60*time.Second, fmt.Sprintf("listed on node %d", i+1), func() string {
			if st, _ := dig(t, dns[i], ipName, "A"); st != "NOERROR" {
				return st
			}
			return ""
		})
	}

	// Delisted through node 1: nodes 2 and 3 show it delisted, with
	// the reason and the operator, and their zones stop answering.
	r := apiDo(t, "DELETE", bases[0]+"/api/v1/indicators/ip/45.142.120.11", e2eSubmit, "application/json", []byte(`{"reason":"host cleaned, ticket 42"}`))
	if r.code != 200 {
		t.Fatalf("delist on node 1: %d %s", r.code, r.body)
	}
	for i := range nodes {
		clustertest.Eventually(t, 60*time.Second, fmt.Sprintf("delisted on node %d", i+1), func() string {
			r := apiDo(t, "GET", bases[i]+"/api/v1/indicators/ip/45.142.120.11", e2eRead, "", nil)
			if r.code != 200 || !strings.Contains(string(r.body), `"reason":"host cleaned, ticket 42"`) || !strings.Contains(string(r.body), `"by":"feeder"`) {
				return fmt.Sprintf("%d %s", r.code, r.body)
			}
			if st, _ := dig(t, dns[i], ipName, "A"); st != "NXDOMAIN" {
				return "DNS: " + st
			}
			return ""
		})
	}

	// Retried through node 2: every node requeues it at the operator's
	// time, with the operator's reason. (The desk is down: the nodes
	// keep trying, and an entry is "sending" during each attempt, 409.)
	var asked store.OutboxEntry
	clustertest.Eventually(t, 60*time.Second, "retry on node 2", func() string {
		r = apiDo(t, "POST", bases[1]+"/api/v1/outbox/"+id+"/retry", e2eSubmit, "application/json", []byte(`{"reason":"desk is back"}`))
		if r.code == 409 && strings.Contains(string(r.body), "sending") {
			return string(r.body)
		}
		if r.code != 200 || json.Unmarshal(r.body, &asked) != nil || asked.Requeued.IsZero() {
			t.Fatalf("retry on node 2: %d %s", r.code, r.body)
		}
		return ""
	})
	for i := range nodes {
		clustertest.Eventually(t, 60*time.Second, fmt.Sprintf("requeued on node %d", i+1), func() string {
			e, why := outboxEntry(t, bases[i], id)
			if e == nil {
				return why
			}
			if !e.Requeued.Equal(asked.Requeued) {
				return fmt.Sprintf("requeued %v, want %v", e.Requeued, asked.Requeued)
			}
			return ""
		})
	}
	// Without a quorum: 503, Retry-After, a fixed text; the domain
	// stays listed on node 1, the report pending.
	const domName = "spam-domain.biz.dbl.e2e.example"
	if st, _ := dig(t, dns[0], domName, "A"); st != "NOERROR" {
		t.Fatalf("the domain is not listed on node 1: %s", st)
	}
	nodes[1].stop()
	nodes[2].stop()
	r = apiDo(t, "DELETE", bases[0]+"/api/v1/indicators/domain/spam-domain.biz", e2eSubmit, "application/json", []byte(`{"reason":"not without quorum"}`))
	if r.code != 503 || r.h.Get("Retry-After") == "" || !strings.Contains(string(r.body), `"error":"cannot store now, try again later"`) {
		t.Errorf("delist without quorum: %d %v %s, want 503 with Retry-After and a generic text", r.code, r.h, r.body)
	}
	for _, leak := range []string{"nats", "stream", "publish", "cluster"} {
		if strings.Contains(strings.ToLower(string(r.body)), leak) {
			t.Errorf("the 503 names %q: %s", leak, r.body)
		}
	}
	r = apiDo(t, "GET", bases[0]+"/api/v1/indicators/domain/spam-domain.biz", e2eRead, "", nil)
	if r.code != 200 || strings.Contains(string(r.body), "not without quorum") || strings.Contains(string(r.body), `"delisted":{`) {
		t.Errorf("node 1 changed after a refused delisting: %d %s", r.code, r.body)
	}
	if st, _ := dig(t, dns[0], domName, "A"); st != "NOERROR" {
		t.Errorf("the domain is not listed on node 1 after a refused delisting: %s", st)
	}
	clustertest.Eventually(t, 60*time.Second, "cancel on node 1 without quorum", func() string {
		r = apiDo(t, "POST", bases[0]+"/api/v1/outbox/"+id+"/cancel", e2eSubmit, "application/json", nil)
		if r.code == 409 && strings.Contains(string(r.body), "sending") {
			return string(r.body)
		}
		if r.code != 503 || r.h.Get("Retry-After") == "" || !strings.Contains(string(r.body), `"error":"cannot store now, try again later"`) {
			t.Fatalf("cancel without quorum: %d %v %s, want 503 with Retry-After and a generic text", r.code, r.h, r.body)
		}
		return ""
	})
	if e, why := outboxEntry(t, bases[0], id); e == nil || e.Status == store.OutboxCancelled {
		t.Errorf("node 1's entry after a refused cancel: %+v %s, want it not cancelled", e, why)
	}
}

// outboxEntry reads entry id from node base's outbox listing (nil and
// why when it is not there).
func outboxEntry(t *testing.T, base, id string) (*store.OutboxEntry, string) {
	t.Helper()
	r := apiDo(t, "GET", base+"/api/v1/outbox?limit=1000", e2eRead, "", nil)
	var page struct{ Entries []store.OutboxEntry }
	if r.code != 200 || json.Unmarshal(r.body, &page) != nil {
		return nil, fmt.Sprintf("%d %s", r.code, r.body)
	}
	for i := range page.Entries {
		if page.Entries[i].ID.String() == id {
			return &page.Entries[i], ""
		}
	}
	return nil, "not in the outbox"
}
