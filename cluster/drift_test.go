package cluster_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/cluster"
	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/syncbuf"
)

func TestReconcile(t *testing.T) {
	base := jetstream.StreamConfig{Name: cluster.StreamName, Replicas: 3, MaxAge: 720 * time.Hour, Duplicates: 2 * time.Minute}
	with := func(f func(*jetstream.StreamConfig)) jetstream.StreamConfig {
		c := base
		f(&c)
		return c
	}
	cases := []struct {
		name       string
		have, want jetstream.StreamConfig
		result     jetstream.StreamConfig
		keys       []string
		kept       string
	}{
		{"same", base, base, base, nil, ""},
		{"fewer replicas on this node: kept", base, with(func(c *jetstream.StreamConfig) { c.Replicas = 1 }), base, []string{"cluster.replicas"}, "stream"},
		{"more replicas on this node: raised", base, with(func(c *jetstream.StreamConfig) { c.Replicas = 5 }), with(func(c *jetstream.StreamConfig) { c.Replicas = 5 }), []string{"cluster.replicas"}, "node"},
		{"shorter retention on this node: kept", base, with(func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour }), base, []string{"channels[].retention, retention_orphaned (the longest)"}, "stream"},
		{"longer retention on this node: raised", base, with(func(c *jetstream.StreamConfig) { c.MaxAge = 2000 * time.Hour }), with(func(c *jetstream.StreamConfig) { c.MaxAge = 2000 * time.Hour }), []string{"channels[].retention, retention_orphaned (the longest)"}, "node"},
		{"unlimited stream retention is the longest", with(func(c *jetstream.StreamConfig) { c.MaxAge = 0 }), base, with(func(c *jetstream.StreamConfig) { c.MaxAge = 0 }), []string{"channels[].retention, retention_orphaned (the longest)"}, "stream"},
		{"a shorter duplicate window (another version) is not applied", base, with(func(c *jetstream.StreamConfig) { c.Duplicates = time.Minute }), base, []string{"duplicate window (xarfd version)"}, "stream"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, drift := cluster.Reconcile(c.have, c.want)
			if got.Replicas != c.result.Replicas || got.MaxAge != c.result.MaxAge || got.Duplicates != c.result.Duplicates {
				t.Errorf("config = %d replicas, %v, %v; want %d, %v, %v", got.Replicas, got.MaxAge, got.Duplicates, c.result.Replicas, c.result.MaxAge, c.result.Duplicates)
			}
			var keys []string
			for _, d := range drift {
				keys = append(keys, d.Key)
				if d.Kept != c.kept {
					t.Errorf("%s: kept %s, want %s", d.Key, d.Kept, c.kept)
				}
			}
			if fmt.Sprint(keys) != fmt.Sprint(c.keys) {
				t.Errorf("drift keys = %v, want %v", keys, c.keys)
			}
		})
	}
}

// Two nodes on one NATS server, the second with a shorter retention: the
// stream keeps the first node's, and the second node's log says which
// key differs.
func TestDriftNotLowered(t *testing.T) {
	s := startNATS(t, func(*server.Options) {})
	block := fmt.Sprintf("    url: %q\n", s.ClientURL())
	maxAge := func() time.Duration {
		js, err := jetstream.New(connect(t, s))
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(context.Background(), cluster.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.MaxAge
	}

	a, err := startNode(t, remoteConfigWith(t, "mx1", "retention_orphaned: 2000h\n", block), &config.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, a)
	if got := maxAge(); got != 2000*time.Hour {
		t.Fatalf("stream max_age = %v after mx1, want 2000h", got)
	}

	logs := &syncbuf.Buffer{}
	b, err := startNodeLog(t, remoteConfig(t, "mx2", block), &config.Resources{}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, b, a)
	if got := maxAge(); got != 2000*time.Hour {
		t.Errorf("mx2, with a shorter retention, lowered the stream's max_age to %v", got)
	}
	if l := logs.String(); !strings.Contains(l, `"key":"channels[].retention, retention_orphaned (the longest)"`) || !strings.Contains(l, `"kept":"stream"`) {
		t.Errorf("mx2 did not warn of the difference:\n%s", l)
	}

	// Their configuration fingerprints differ in retention: each node
	// names the other in its health, and mx2 logs which part differs.
	for _, c := range []struct{ m, other *clustertest.Member }{{a, b}, {b, a}} {
		clustertest.Eventually(t, 30*time.Second, c.m.Name+" sees the mismatch", func() string {
			if got := c.m.Node.Health().ConfigMismatch; !slices.Equal(got, []string{c.other.Name}) {
				return fmt.Sprint(got)
			}
			return ""
		})
	}
	if l := logs.String(); !strings.Contains(l, `"peer":"mx1","differs":["retention"]`) {
		t.Errorf("mx2 did not log which part of mx1's configuration differs:\n%s", l)
	}
	// A third node configured as mx1 matches it.
	c, err := startNode(t, remoteConfigWith(t, "mx3", "retention_orphaned: 2000h\n", block), &config.Resources{})
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "mx3 sees mx2 only", func() string {
		if got := c.Node.Health().ConfigMismatch; !slices.Equal(got, []string{"mx2"}) {
			return fmt.Sprint(got)
		}
		return ""
	})
	clustertest.Eventually(t, 30*time.Second, "mx2 sees mx1 and mx3", func() string {
		if got := b.Node.Health().ConfigMismatch; !slices.Equal(got, []string{"mx1", "mx3"}) {
			return fmt.Sprint(got)
		}
		return ""
	})
	if got := a.Node.Health().ConfigMismatch; !slices.Equal(got, []string{"mx2"}) {
		t.Errorf("mx1 mismatches %v, want [mx2]", got)
	}
}

func TestConfigFingerprint(t *testing.T) {
	cfg := remoteConfig(t, "mx1", "    url: \"nats://127.0.0.1:4222\"\n")
	key := []byte("0123456789abcdef-secret-hmac-key")
	res := &config.Resources{HMACKeys: map[string][]byte{"trap": key}}
	fp := cluster.ConfigFingerprint(cfg, res)
	if d := fp.Differs(cluster.ConfigFingerprint(cfg, res)); d != nil {
		t.Errorf("the same configuration differs in %v", d)
	}
	other := &config.Resources{HMACKeys: map[string][]byte{"trap": []byte("another-key-of-sixteen-bytes")}}
	if d := fp.Differs(cluster.ConfigFingerprint(cfg, other)); !slices.Equal(d, []string{"redaction"}) {
		t.Errorf("another HMAC key differs in %v, want [redaction]", d)
	}
	cfg2 := remoteConfig(t, "mx2", "    url: \"nats://127.0.0.1:4222\"\n")
	cfg2.Reporter.PerContactPerHour++
	if d := fp.Differs(cluster.ConfigFingerprint(cfg2, res)); !slices.Equal(d, []string{"reporter"}) {
		t.Errorf("another reporter setting differs in %v, want [reporter]", d)
	}
	cfg2 = remoteConfig(t, "mx2", "    url: \"nats://127.0.0.1:4222\"\n")
	cfg2.Cluster.ClaimLease = config.Duration(30 * time.Minute)
	if d := fp.Differs(cluster.ConfigFingerprint(cfg2, res)); !slices.Equal(d, []string{"reporter"}) {
		t.Errorf("another claim lease differs in %v, want [reporter]", d)
	}
	// The default lease hashes as no lease at all: a node of a version
	// that does not know cluster.claim_lease runs on the default.
	cfg2.Cluster.ClaimLease = config.Duration(config.DefaultClusterClaimLease)
	without := *cfg2
	without.Cluster = nil
	if d := cluster.ConfigFingerprint(cfg2, res).Differs(cluster.ConfigFingerprint(&without, res)); d != nil {
		t.Errorf("the default claim lease differs from none in %v", d)
	}
	cfg2 = remoteConfig(t, "mx2", "    url: \"nats://127.0.0.1:4222\"\n")
	cfg2.Channels[0].Name = "fbl2"
	if d := fp.Differs(cluster.ConfigFingerprint(cfg2, res)); !slices.Contains(d, "channels") {
		t.Errorf("a renamed channel differs in %v, want channels among them", d)
	}
	b, _ := json.Marshal(fp)
	sum := sha256.Sum256(key)
	for _, secret := range []string{string(key), hex.EncodeToString(sum[:]), hex.EncodeToString(sum[:8])} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the fingerprint shows the HMAC key (or its hash): %s", b)
		}
	}
}

// connect is a plain client of s, closed when t ends.
func connect(t *testing.T, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Subjects are never dropped: a stream of an older version gains the
// operators' actions' subject (and says so), and one another node added
// stays.
func TestReconcileSubjects(t *testing.T) {
	rec, op := cluster.SubjectPrefix+">", cluster.OpSubjectPrefix+">"
	older := jetstream.StreamConfig{Name: cluster.StreamName, Subjects: []string{rec}}
	this := jetstream.StreamConfig{Name: cluster.StreamName, Subjects: []string{rec, op}}
	got, drift := cluster.Reconcile(older, this)
	if fmt.Sprint(got.Subjects) != fmt.Sprint([]string{rec, op}) || len(drift) != 1 || drift[0].Kept != "node" {
		t.Errorf("older stream: subjects %v, drift %+v", got.Subjects, drift)
	}
	other := jetstream.StreamConfig{Name: cluster.StreamName, Subjects: []string{rec, op, "xarfd.later.>"}}
	got, drift = cluster.Reconcile(other, this)
	if fmt.Sprint(got.Subjects) != fmt.Sprint([]string{rec, op, "xarfd.later.>"}) || len(drift) != 0 {
		t.Errorf("a stream with a subject this node lacks: subjects %v, drift %+v", got.Subjects, drift)
	}
	if got, drift = cluster.Reconcile(this, this); fmt.Sprint(got.Subjects) != fmt.Sprint(this.Subjects) || len(drift) != 0 {
		t.Errorf("same subjects: %v, drift %+v", got.Subjects, drift)
	}
}
