package cluster

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// startNATSCluster runs three embedded NATS servers with JetStream on
// 127.0.0.1, random ports, routed to each other, until t ends.
func claimNATSCluster(t *testing.T) []*server.Server {
	t.Helper()
	// The route ports are chosen first, so that every server knows all
	// three from the start.
	ports := make([]int, 3)
	routes := make([]*url.URL, 3)
	for i := range ports {
		addr := claimFreePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: addr}
		_, p, _ := strings.Cut(addr, ":")
		ports[i], _ = strconv.Atoi(p)
	}
	var servers []*server.Server
	for i := range 3 {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "claims", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatal("a NATS server did not start")
		}
	}
	return servers
}

// replicatedNode is node on a three-server cluster with buckets of three
// replicas; it waits for the cluster to elect its leaders.
func claimReplicatedNode(t *testing.T, s *server.Server, name string, m *metrics.Metrics) *Claims {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClaims(js, ClaimOptions{Node: name, Kind: metrics.ClaimReport, Replicas: 3, Window: time.Hour, Horizon: 2 * time.Hour, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	// The buckets are made on first use: until the cluster has elected
	// its leaders that fails, as it does for a node started first.
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.ready(ctx)
		cancel()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not take the buckets: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// On replicated buckets (R3: a compare-and-set conflict is another
// error code there) three nodes, each on its own server, race for the
// same claims: each is won once; a released one is taken, a sent one is
// reported sent; rate counters hold.
func TestClaimsOnReplicatedBuckets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	servers := claimNATSCluster(t)
	nodes := make([]*Claims, 3)
	for i, s := range servers {
		nodes[i] = claimReplicatedNode(t, s, fmt.Sprintf("mx%d", i+1), nil)
	}
	ctx := context.Background()
	const keys = 10
	type win struct {
		key  int
		node int
	}
	wins := make(chan win, keys*3)
	errs := make(chan error, 3)
	for n, c := range nodes {
		go func() {
			for k := range keys {
				l, _, err := c.Claim(ctx, fmt.Sprintf("r3.%d", k), store.ID{}, time.Now(), time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if l != nil {
					wins <- win{k, n}
					if k%2 == 0 {
						err = l.Done(ctx, "<m>")
					} else {
						err = l.Release(ctx)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(wins)
	won := map[int]int{}
	for w := range wins {
		won[w.key]++
	}
	for k := range keys {
		// A released claim may be won again by a node that came later;
		// a sent one never.
		if k%2 == 0 && won[k] != 1 {
			t.Errorf("sent key %d won %d times", k, won[k])
		}
		if won[k] == 0 {
			t.Errorf("key %d won by nobody", k)
		}
	}
	for k := 0; k < keys; k += 2 {
		// Another report of the incident, so that the node that sent
		// it does not go on with it as its own.
		_, held, err := nodes[0].Claim(ctx, fmt.Sprintf("r3.%d", k), claimID(t), time.Now(), time.Minute)
		if err != nil || held == nil || !held.Sent {
			t.Fatalf("sent key %d: %v %+v", k, err, held)
		}
	}

	now := time.Now().UTC()
	for i := range 4 {
		lim, err := nodes[i%3].RateTake(ctx, []string{"abuse@desk.test"}, now.Add(time.Duration(i)), 4)
		if err != nil || lim != nil {
			t.Fatalf("take %d: %v %+v", i, err, lim)
		}
	}
	if lim, err := nodes[1].RateTake(ctx, []string{"abuse@desk.test"}, now.Add(time.Second), 4); err != nil || lim == nil {
		t.Fatalf("fifth take: %v %+v", err, lim)
	}
}
