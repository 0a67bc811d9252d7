package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterAbsentIsSingleNode(t *testing.T) {
	c, err := Parse([]byte(minimal), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != nil {
		t.Fatalf("cluster = %+v without a cluster block", c.Cluster)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "cluster") {
		t.Errorf("effective configuration names a cluster:\n%s", out)
	}
}

func TestClusterDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal+`
data_dir: /var/lib/xarfd
cluster:
  node: mx1
  nats:
    embedded: {cluster_listen: "0.0.0.0:6222", routes: ["nats://mx2:6222", "nats://mx3:6222"]}
`), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if cl.Replicas != DefaultClusterReplicas || cl.Sync != SyncAlways || cl.PublishTimeout.D() != DefaultClusterPublishTimeout ||
		cl.ClaimLease.D() != DefaultClusterClaimLease || cl.NATS.Embedded.StoreDir != "/var/lib/xarfd/nats" {
		t.Errorf("cluster defaults = %+v, embedded %+v", cl, cl.NATS.Embedded)
	}
	// The effective configuration prints and reads back the same.
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(out, "effective")
	if err != nil {
		t.Fatalf("effective configuration does not load: %v\n%s", err, out)
	}
	if c2.Cluster.Node != "mx1" || c2.Cluster.NATS.Embedded.Routes[1] != "nats://mx3:6222" {
		t.Errorf("round trip: %+v", c2.Cluster)
	}
}

func TestClusterValidation(t *testing.T) {
	for _, tc := range []struct{ block, key, want string }{
		{"cluster: {node: 'mx 1', nats: {url: 'nats://n:4222'}}", "cluster.node", "want a name"},
		{"cluster: {node: mx1, replicas: 7, nats: {url: 'nats://n:4222'}}", "cluster.replicas", "want 1 to 5"},
		{"cluster: {node: mx1, sync: sometimes, nats: {url: 'nats://n:4222'}}", "cluster.sync", "want always or default"},
		{"cluster: {node: mx1}", "cluster.nats", "set nats.url"},
		{"smtp: {max_message_bytes: 40000000}\ncluster: {node: mx1, nats: {url: 'nats://n:4222'}}", "smtp.max_message_bytes", "in cluster mode at most 33554432"},
		{"cluster: {node: mx1, nats: {url: 'nats://n:4222', embedded: {cluster_listen: ':6222', routes: ['nats://b:6222']}}}", "cluster.nats.url", "not both"},
		{"cluster: {node: mx1, nats: {url: 'http://n:4222'}}", "cluster.nats.url", "want nats://host:port"},
		{"cluster: {node: mx1, nats: {url: 'nats://u:p@n:4222'}}", "cluster.nats.url", "credentials do not belong"},
		{"cluster: {node: mx1, nats: {url: 'nats://n:4222', user: x}}", "cluster.nats.password_file", "required"},
		{"cluster: {node: mx1, nats: {url: 'nats://n:4222', tls: {cert_file: /c}}}", "cluster.nats.tls", "go together"},
		{"cluster: {node: mx1, nats: {embedded: {routes: ['nats://b:6222']}}}", "cluster.nats.embedded.cluster_listen", "required"},
		{"cluster: {node: mx1, nats: {embedded: {cluster_listen: ':6222'}}}", "cluster.nats.embedded.routes", "is empty"},
		{"cluster: {node: mx1, nats: {embedded: {cluster_listen: ':6222', routes: ['b:6222']}}}", "cluster.nats.embedded.routes[0]", "want nats://"},
		{"cluster: {node: mx1, nats: {embedded: {cluster_listen: ':6222', cluster_advertise: 'mx1', routes: ['nats://b:6222']}}}", "cluster.nats.embedded.cluster_advertise", "host:port"},
		{"cluster: {node: mx1, nats: {embedded: {cluster_listen: ':6222', routes: ['nats://b:6222']}, creds_file: /x}}", "cluster.nats.creds_file", "url only"},
		{"cluster: {node: mx1, nats: {embedded: {cluster_listen: ':6222', routes: ['nats://b:6222']}, tls: {cert_file: /c, key_file: /k}}}", "cluster.nats.tls", "mutual TLS"},
		{"cluster: {node: mx1, nats: {embedded: {cluster_listen: ':6222', routes: ['nats://b:6222']}, tlss: {}}}", "cluster.nats.tlss", "unknown key"},
		{"cluster: {node: mx1, claim_lease: 10m, nats: {url: 'nats://n:4222'}}", "cluster.claim_lease", "at least 11m0s (the reporter waits up to 10m0s"},
		{"cluster: {node: mx1, claim_lease: 30s, nats: {url: 'nats://n:4222'}}", "cluster.claim_lease", "at least 11m0s"},
		{"reporter: {retry: {give_up_after: 1h}}\ncluster: {node: mx1, claim_lease: 1h, nats: {url: 'nats://n:4222'}}", "cluster.claim_lease", "shorter than reporter.retry.give_up_after (1h0m0s)"},
	} {
		_, err := Parse([]byte(minimal+tc.block+"\n"), "c.yaml")
		if err == nil {
			t.Errorf("%s: accepted", tc.block)
			continue
		}
		if !strings.Contains(err.Error(), "c.yaml:") || !strings.Contains(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant file, %s and %q", tc.block, err, tc.key, tc.want)
		}
	}
}

func TestClusterClaimLease(t *testing.T) {
	for _, lease := range []string{"11m", "30m", "2h"} {
		c, err := Parse([]byte(minimal+"cluster: {node: mx1, claim_lease: "+lease+", nats: {url: 'nats://n:4222'}}\n"), "c.yaml")
		if err != nil {
			t.Fatalf("claim_lease %s: %v", lease, err)
		}
		if want, _ := time.ParseDuration(lease); c.Cluster.ClaimLease.D() != want {
			t.Errorf("claim_lease %s read as %v", lease, c.Cluster.ClaimLease.D())
		}
	}
}

func TestClusterPrepareReadsFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(minimal+`cluster: {node: mx1, nats: {url: 'nats://n:4222', user: xarfd, password_file: `+pw+`}}`+"\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Prepare(Parsers{})
	if err != nil {
		t.Fatal(err)
	}
	if res.NATSPassword != "s3cret" {
		t.Errorf("password = %q", res.NATSPassword)
	}
	c, err = Parse([]byte(minimal+`cluster: {node: mx1, nats: {url: 'nats://n:4222', creds_file: `+filepath.Join(dir, "none")+`, tls: {ca_file: `+ca+`}}}`+"\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Prepare(Parsers{})
	if err == nil || !strings.Contains(err.Error(), "cluster.nats.creds_file: cannot read") || !strings.Contains(err.Error(), "cluster.nats.tls.ca_file: "+ca+" holds no PEM") {
		t.Errorf("prepare = %v", err)
	}
}
