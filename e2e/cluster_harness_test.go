package e2e

// The multi-process cluster harness: N real xarfd processes with their
// embedded NATS servers routed to each other on 127.0.0.1, each behind a
// route proxy in this test process, so that a test can kill a node, restart
// it, or cut it off from the others.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/internal/syncbuf"
)

// clusterStream is the replicated stream the nodes publish to (package
// cluster).
const clusterStream = "XARFD"

// routeNet is the network between the nodes' NATS servers: every route
// connection runs through the proxy of the node it goes to, and the
// proxy learns the node it comes from out of the NATS INFO the dialling
// server sends (its server_name, the node's name). Cutting a node closes
// every connection from or to it and refuses new ones until healed: a
// partition as the nodes see it, while their processes, client ports,
// SMTP and HTTP stay up.
type routeNet struct {
	mu    sync.Mutex
	cut   map[string]bool
	conns map[*routeConn]struct{}
}

type routeConn struct {
	from, to string // node names; from is "" until sniffed
	a, b     net.Conn
}

func (c *routeConn) close() { c.a.Close(); c.b.Close() }

// routeProxy listens for route connections to node `to` and forwards
// them to its real cluster port. Nodes advertise the proxy's address as
// their cluster address, so that no route bypasses it through gossip.
type routeProxy struct {
	n      *routeNet
	to     string
	l      net.Listener
	target string
}

func newRouteNet(t testing.TB) *routeNet {
	n := &routeNet{cut: map[string]bool{}, conns: map[*routeConn]struct{}{}}
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for c := range n.conns {
			c.close()
		}
	})
	return n
}

func (n *routeNet) proxy(t testing.TB, to, target string) *routeProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &routeProxy{n: n, to: to, l: l, target: target}
	t.Cleanup(func() { l.Close() })
	go p.serve()
	return p
}

func (p *routeProxy) addr() string { return p.l.Addr().String() }

func (p *routeProxy) serve() {
	for {
		a, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.handle(a)
	}
}

// serverName finds the dialling server's name in the INFO it sends.
var serverName = regexp.MustCompile(`"server_name":"([^"]+)"`)

func (p *routeProxy) handle(a net.Conn) {
	b, err := net.Dial("tcp", p.target)
	if err != nil {
		a.Close()
		return
	}
	c := &routeConn{to: p.to, a: a, b: b}
	if !p.n.add(c) {
		return
	}
	go func() { io.Copy(a, b); c.close() }()
	// Hold what the dialler sends until its INFO names it: a connection
	// from a cut node must not deliver a byte.
	var held []byte
	buf := make([]byte, 32<<10)
	a.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		k, err := a.Read(buf)
		held = append(held, buf[:k]...)
		if m := serverName.FindSubmatch(held); m != nil {
			if !p.n.named(c, string(m[1])) {
				return
			}
			break
		}
		if err != nil || len(held) > 1<<20 {
			c.close()
			p.n.remove(c)
			return
		}
	}
	a.SetReadDeadline(time.Time{})
	if _, err := b.Write(held); err == nil {
		io.Copy(b, a)
	}
	c.close()
	p.n.remove(c)
}

func (n *routeNet) add(c *routeConn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut[c.to] {
		c.close()
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *routeNet) named(c *routeConn, from string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	c.from = from
	if _, ok := n.conns[c]; !ok || n.cut[from] || n.cut[c.to] {
		delete(n.conns, c)
		c.close()
		return false
	}
	return true
}

func (n *routeNet) remove(c *routeConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, c)
}

// isolate cuts node off from all others.
func (n *routeNet) isolate(node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[node] = true
	for c := range n.conns {
		if c.to == node || c.from == node {
			c.close()
			delete(n.conns, c)
		}
	}
}

// heal lets node's routes connect again (the servers redial their
// configured routes).
func (n *routeNet) heal(node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, node)
}

// links counts the open route connections from or to node whose
// dialler is known.
func (n *routeNet) links(node string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for c := range n.conns {
		if c.from != "" && (c.to == node || c.from == node) {
			k++
		}
	}
	return k
}

type clusterNode struct {
	name       string
	dir        string
	cfg        string
	clientURL  string // the embedded NATS server's client port
	cluster    string // its real cluster port
	proxy      *routeProxy
	d          *daemon
	smtp, base string // SMTP address and HTTP base URL of the running process
}

type testCluster struct {
	t     *testing.T
	net   *routeNet
	nodes []*clusterNode
}

// clusterNodeConfig is a node's configuration: hostname, data_dir, the
// extra YAML of the test (reporter, resolver), then the cluster block.
const clusterNodeConfig = `
hostname: %s.e2e.example
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
    redact: {recipients: true}
  - name: plain
    kind: trap
    addresses: ["*@plain.e2e.example"]
smtp: {listen: ["127.0.0.1:0"], max_connections_per_ip: 200}
http: {listen: "127.0.0.1:0"}
data_dir: %s
log: {level: info}
%s
cluster:
  node: %s
  replicas: 3
  publish_timeout: %s
  nats:
    embedded:
      listen: %q
      cluster_listen: %q
      cluster_advertise: %q
      routes: [%s]
`

// startCluster starts n nodes (mx1…mxN) with extra YAML in each
// configuration and waits until every one is healthy.
func startCluster(t *testing.T, n int, extra string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, net: newRouteNet(t)}
	for i := range n {
		node := &clusterNode{name: fmt.Sprintf("mx%d", i+1), dir: t.TempDir()}
		node.clientURL = "nats://" + freePort(t)
		node.cluster = freePort(t)
		node.proxy = c.net.proxy(t, node.name, node.cluster)
		c.nodes = append(c.nodes, node)
	}
	for _, node := range c.nodes {
		var routes []string
		for _, o := range c.nodes {
			if o != node {
				routes = append(routes, fmt.Sprintf("%q", "nats://"+o.proxy.addr()))
			}
		}
		yaml := fmt.Sprintf(clusterNodeConfig, node.name, filepath.Join(node.dir, "data"), extra, node.name,
			"3s", strings.TrimPrefix(node.clientURL, "nats://"), node.cluster, node.proxy.addr(), strings.Join(routes, ", "))
		node.cfg = filepath.Join(node.dir, "xarfd.yaml")
		if err := os.WriteFile(node.cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A replicated stream needs a quorum of servers: the nodes start
	// together.
	for _, node := range c.nodes {
		c.spawn(node)
	}
	for _, node := range c.nodes {
		c.awaitListening(node)
	}
	for _, node := range c.nodes {
		c.waitHealthy(node)
	}
	return c
}

// spawn starts node's process without waiting for it.
func (c *testCluster) spawn(node *clusterNode) {
	t := c.t
	cmd := exec.Command(binary, "serve", "-config", node.cfg)
	cmd.Dir = node.dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cmd: cmd, logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.logs.Write([]byte(sc.Text() + "\n"))
		}
		io.Copy(io.Discard, stderr)
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			// Without the access log of the health polls.
			var keep []string
			for _, l := range strings.Split(d.logs.String(), "\n") {
				if !strings.Contains(l, `"message":"http request"`) && !strings.Contains(l, `"message":"not healthy"`) {
					keep = append(keep, l)
				}
			}
			t.Logf("%s log (last lines):\n%s", node.name, tail(strings.Join(keep, "\n"), 40))
		}
	})
	node.d, node.smtp, node.base = d, "", ""
}

// awaitListening waits for the node's SMTP and HTTP listeners.
func (c *testCluster) awaitListening(node *clusterNode) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for node.smtp == "" || node.base == "" {
		for _, line := range strings.Split(node.d.logs.String(), "\n") {
			var ev struct{ Message, Addr string }
			if json.Unmarshal([]byte(line), &ev) != nil || ev.Addr == "" {
				continue
			}
			switch ev.Message {
			case "smtp listening":
				node.smtp = ev.Addr
			case "http listening":
				node.base = "http://" + ev.Addr
			}
		}
		select {
		case <-node.d.exited:
			t.Fatalf("%s exited before listening: %v\n%s", node.name, node.d.err, node.d.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen within 60s:\n%s", node.name, tail(node.d.logs.String(), 40))
		}
	}
}

// waitHealthy polls the node's /healthz until 200.
func (c *testCluster) waitHealthy(node *clusterNode) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		resp, err := http.Get(node.base + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 90s: %s\n%s", node.name, last, tail(node.d.logs.String(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill SIGKILLs node's process.
func (c *testCluster) kill(node *clusterNode) {
	node.d.cmd.Process.Kill()
	<-node.d.exited
}

// restart starts a killed node again on its configuration and store.
func (c *testCluster) restart(node *clusterNode) {
	c.t.Helper()
	c.spawn(node)
	c.awaitListening(node)
	c.waitHealthy(node)
}

// leader is the node that leads the stream now, asked through the
// client port of any node that answers.
func (c *testCluster) leader() *clusterNode {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		for _, node := range c.nodes {
			name, err := streamLeader(node.clientURL)
			if err != nil {
				last = err
				continue
			}
			for _, n := range c.nodes {
				if n.name == name {
					return n
				}
			}
			last = fmt.Errorf("stream leader %q is no node", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no stream leader within 30s: %v", last)
	return nil
}

func streamLeader(url string) (string, error) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect())
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, clusterStream)
	if err != nil {
		return "", err
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("stream has no leader")
	}
	return info.Cluster.Leader, nil
}

// others are the nodes but skip.
func (c *testCluster) others(skip *clusterNode) []*clusterNode {
	var out []*clusterNode
	for _, n := range c.nodes {
		if n != skip {
			out = append(out, n)
		}
	}
	return out
}
