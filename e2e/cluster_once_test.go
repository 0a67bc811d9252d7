package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/store"
)

// smtpGate stands between the nodes' reporters and the desk (Mailpit).
// Closed, it greets each session itself, reads the EHLO (which names the
// node: its hostname) and holds the session there; opened, it hands the
// held sessions on to the desk and passes new ones straight through.
type smtpGate struct {
	t      *testing.T
	l      net.Listener
	target string
	mu     sync.Mutex
	open   bool
	held   []*heldSession
	arrive chan string // node names of held sessions, as they come
	wg     sync.WaitGroup
}

type heldSession struct {
	c    net.Conn
	r    *bufio.Reader
	ehlo string
}

func startSMTPGate(t *testing.T, target string) *smtpGate {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &smtpGate{t: t, l: l, target: target, arrive: make(chan string, 100)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			g.wg.Go(func() { g.handle(c) })
		}
	}()
	t.Cleanup(func() {
		l.Close()
		g.mu.Lock()
		for _, h := range g.held {
			h.c.Close()
		}
		g.mu.Unlock()
	})
	return g
}

func (g *smtpGate) addr() string { return g.l.Addr().String() }

var ehloHost = regexp.MustCompile(`(?i)^(?:EHLO|HELO) ([^.\s]+)`)

func (g *smtpGate) handle(c net.Conn) {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if open {
		g.pass(c, bufio.NewReader(c), "")
		return
	}
	io.WriteString(c, "220 gate.e2e.example ESMTP\r\n")
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return
	}
	node := "?"
	if m := ehloHost.FindStringSubmatch(line); m != nil {
		node = m[1]
	}
	g.mu.Lock()
	if g.open { // opened meanwhile
		g.mu.Unlock()
		g.pass(c, r, line)
		return
	}
	g.held = append(g.held, &heldSession{c: c, r: r, ehlo: line})
	g.mu.Unlock()
	g.arrive <- node
}

// pass connects c to the desk; a session greeted by the gate already
// has its EHLO line (ehlo) sent on, and the desk's greeting dropped.
func (g *smtpGate) pass(c net.Conn, r *bufio.Reader, ehlo string) {
	defer c.Close()
	up, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer up.Close()
	if ehlo != "" {
		ur := bufio.NewReader(up)
		for {
			l, err := ur.ReadString('\n')
			if err != nil {
				return
			}
			if len(l) < 4 || l[3] != '-' {
				break
			}
		}
		if _, err := io.WriteString(up, ehlo); err != nil {
			return
		}
		go func() { io.Copy(c, ur); c.Close() }()
	} else {
		go func() { io.Copy(c, up); c.Close() }()
	}
	io.Copy(up, r)
}

// release opens the gate: held sessions go on to the desk, new ones pass.
func (g *smtpGate) release() {
	g.mu.Lock()
	g.open = true
	held := g.held
	g.held = nil
	g.mu.Unlock()
	for _, h := range held {
		g.wg.Go(func() { g.pass(h.c, h.r, h.ehlo) })
	}
}

// claimsHeld lists the claims in the cluster's KV bucket: node name per
// key, of claims not yet done.
func claimsHeld(t *testing.T, url string) map[string]string {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, clusterClaimBucket)
	if err != nil {
		t.Fatalf("claims bucket: %v", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var rec struct{ Node, State string }
		if json.Unmarshal(e.Value(), &rec) == nil && rec.State == "claimed" {
			out[k] = rec.Node
		}
	}
	return out
}

// clusterClaimBucket is the KV bucket of claims (package cluster).
const clusterClaimBucket = "xarfd_claims"

const onceConfig = `
resolver: %q
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1s, give_up_after: 1h}
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@desk.e2e.example}]
`

// TestClusterSendsOnceThroughACrash: with the reporter on (not a dry
// run) on all three nodes and Mailpit as the smarthost, each incident
// reaches the desk exactly once, although every node holds every outbox
// entry and one incident came in through two nodes, when the node that
// claimed a delivery is SIGKILLed between its claim and its sending
// (held by the gate before EHLO is answered). The survivors deliver the
// rest and leave its claims alone while they live (reporter lease, 15
// minutes); the killed node, restarted, takes its claims over at once
// and sends each of those reports once. (Takeover by another node after
// the lease runs out is package cluster's TestTakeoverWhenANodeDiesAfterClaiming:
// the lease is not configurable, so no e2e test can wait for it.)
func TestClusterSendsOnceThroughACrash(t *testing.T) {
	mp := startMailpit(t)
	dns := startTestDNS(t)
	gate := startSMTPGate(t, mp.smtp)
	c := startCluster(t, 3, fmt.Sprintf(onceConfig, dns.addr, gate.addr()))

	const incidents = 6
	for i := range incidents {
		body := spamHit(e2eOrigin, "t@plain.e2e.example", fmt.Sprintf("incident-%d", i), fmt.Sprintf("distinct body %d", i))
		if _, err := send(c.nodes[i%3].smtp, "bounce@spam.example", []string{"t@plain.e2e.example"}, body); err != nil {
			t.Fatal(err)
		}
	}
	// The same spam again through another node: the same incident.
	body := spamHit(e2eOrigin, "t@plain.e2e.example", "incident-0", "distinct body 0")
	if _, err := send(c.nodes[1].smtp, "bounce@spam.example", []string{"t@plain.e2e.example"}, body); err != nil {
		t.Fatal(err)
	}

	var victim *clusterNode
	select {
	case name := <-gate.arrive:
		for _, n := range c.nodes {
			if n.name == name {
				victim = n
			}
		}
		if victim == nil {
			t.Fatalf("a delivery from %q, no node", name)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no delivery reached the gate within 60s")
	}
	// It claimed before it connected: the bucket names it.
	claims := claimsHeld(t, c.others(victim)[0].clientURL)
	mine := 0
	for _, node := range claims {
		if node == victim.name {
			mine++
		}
	}
	if mine == 0 {
		t.Fatalf("%s is delivering without a claim in the bucket: %v", victim.name, claims)
	}
	c.kill(victim)
	t.Logf("killed %s holding %d claim(s)", victim.name, mine)
	gate.release()

	// The survivors deliver every incident the dead node did not claim.
	awaitDesk(t, mp, incidents-mine, 90*time.Second, c)
	c.restart(victim)
	awaitDesk(t, mp, incidents, 90*time.Second, c)
	for _, n := range c.nodes {
		awaitSettled(t, n, incidents+1)
	}
	// Every node has settled every entry: nothing more is on its way.
	checkDeskOnce(t, mp, incidents)
}

// deskIncidents counts the desk's messages per incident (the Subject of
// the spam, in the evidence attached).
func deskIncidents(t *testing.T, mp *mailpit) (map[string]int, int) {
	t.Helper()
	per := map[string]int{}
	msgs := mp.messages(t)
	re := regexp.MustCompile(`incident-\d+`)
	for _, m := range msgs {
		raw := mp.raw(t, m.ID)
		k := string(re.Find(raw))
		per[k]++
	}
	return per, len(msgs)
}

func awaitDesk(t *testing.T, mp *mailpit, n int, wait time.Duration, c *testCluster) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		per, total := deskIncidents(t, mp)
		if len(per) >= n {
			return
		}
		if time.Now().After(deadline) {
			for _, node := range c.nodes {
				select {
				case <-node.d.exited:
					continue
				default:
				}
				t.Logf("%s's outbox:\n%s", node.name, outboxLines(t, node))
			}
			t.Fatalf("the desk has %d messages for %d incidents after %v, want %d incidents: %v", total, len(per), wait, n, per)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func checkDeskOnce(t *testing.T, mp *mailpit, n int) {
	t.Helper()
	per, total := deskIncidents(t, mp)
	if total != n || len(per) != n {
		t.Errorf("the desk got %d messages for %d incidents, want each of %d once: %v", total, len(per), n, per)
	}
	for k, c := range per {
		if k == "" || c != 1 {
			t.Errorf("incident %q reached the desk %d times", k, c)
		}
	}
}

// awaitSettled waits until node's outbox holds n entries, none pending
// or being sent.
func awaitSettled(t *testing.T, node *clusterNode, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		es := outbox(t, node.base)
		st := countStatus(es)
		open := 0
		for s, k := range st {
			if s != store.OutboxSent && s != store.OutboxDuplicate {
				open += k
			}
		}
		if len(es) == n && open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's outbox did not settle within 90s: %v\n%s", node.name, st, outboxLines(t, node))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func outboxLines(t *testing.T, node *clusterNode) string {
	var b bytes.Buffer
	for _, e := range outbox(t, node.base) {
		fmt.Fprintf(&b, "%s %s attempts=%d %s %s\n", e.ID, e.Status, e.Attempts, e.Reason, strings.TrimSpace(e.LastError))
	}
	return b.String()
}
