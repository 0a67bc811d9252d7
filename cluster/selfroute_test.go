package cluster

import (
	"net/url"
	"testing"
)

func TestSelfRoute(t *testing.T) {
	cases := []struct {
		route string
		host  string
		port  int
		self  bool
	}{
		{"nats://127.0.0.1:6222", "127.0.0.1", 6222, true},
		{"nats://127.0.0.1:6222", "0.0.0.0", 6222, true}, // listening on all: loopback is this host
		{"nats://localhost:6222", "0.0.0.0", 6222, true},
		{"nats://127.0.0.1:6223", "127.0.0.1", 6222, false}, // another node on this host
		{"nats://127.0.0.2:6222", "127.0.0.1", 6222, false}, // same port, another address
		{"nats://192.0.2.7:6222", "0.0.0.0", 6222, false},   // not an address of this host
		{"nats://no-such-host.invalid:6222", "0.0.0.0", 6222, false},
	}
	for _, c := range cases {
		u, err := url.Parse(c.route)
		if err != nil {
			t.Fatal(err)
		}
		if got := selfRoute(u, c.host, c.port); got != c.self {
			t.Errorf("selfRoute(%s, %s:%d) = %v, want %v", c.route, c.host, c.port, got, c.self)
		}
	}
}
