package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/cluster"
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
