package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
)

// Cluster makes this node one of several that share one replicated
// NATS JetStream stream (package cluster). nil (no cluster block): a
// single node on its own bbolt store, as before.
type Cluster struct {
	// Node names this node in the cluster: its durable consumer, its
	// embedded NATS server and its log lines. Unique per cluster.
	Node string `yaml:"node"`
	// Replicas is how many NATS servers hold each record; an
	// acknowledgement means a majority of them has it.
	Replicas int `yaml:"replicas"`
	// Sync is the embedded servers' fsync policy: always (fsync before
	// acknowledging) or default (NATS's periodic sync).
	Sync string `yaml:"sync"`
	// PublishTimeout bounds the wait for the stream's acknowledgement;
	// past it the client gets 451 4.3.0.
	PublishTimeout Duration `yaml:"publish_timeout"`
	// ClaimLease is how long a node's claim on outbound work (a report,
	// a notification, a restrict call) holds without a refresh: when its
	// node dies, another node takes the work over after it.
	ClaimLease Duration `yaml:"claim_lease"`
	NATS       NATS     `yaml:"nats"`
}

// NATS is how a node reaches the NATS cluster: an existing one by URL,
// or the server embedded in xarfd.
type NATS struct {
	// URL lists the servers of an existing NATS cluster, comma separated.
	URL      string        `yaml:"url"`
	Embedded *EmbeddedNATS `yaml:"embedded"`
	// TLS: for url, the client's TLS (CA to verify the servers, an
	// optional client certificate); for embedded, the routes' TLS between
	// the nodes (mutual: cert, key and CA are all required) and the
	// client port's.
	TLS NATSTLS `yaml:"tls"`
	// CredsFile is a NATS credentials file (JWT and nkey seed); url only.
	CredsFile string `yaml:"creds_file"`
	// User and PasswordFile: for url, the client's user and password;
	// for embedded, what the nodes' routes require of each other.
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
}

// EmbeddedNATS is the NATS server xarfd runs in its own process.
type EmbeddedNATS struct {
	// Listen is the client port ("" = a loopback port chosen at start:
	// xarfd itself connects in-process; set it to use the nats CLI).
	Listen string `yaml:"listen"`
	// ClusterListen is where the other nodes' routes connect.
	ClusterListen string `yaml:"cluster_listen"`
	// ClusterAdvertise is the host:port the other nodes are told to
	// route to ("" = cluster_listen's address as they see it): set it
	// when they reach this node through NAT, a port mapping or a proxy,
	// or routes they learn from each other would bypass it.
	ClusterAdvertise string `yaml:"cluster_advertise"`
	// Routes are the other nodes' cluster_listen, as nats://host:port.
	Routes []string `yaml:"routes"`
	// StoreDir holds the JetStream files (default: data_dir/nats).
	StoreDir string `yaml:"store_dir"`
}

// NATSTLS names PEM files for NATS connections.
type NATSTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// Enabled reports whether any TLS file is set.
func (t NATSTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

// Sync policies of cluster.sync.
const (
	SyncAlways  = "always"
	SyncDefault = "default"
)

// nodeName is what NATS accepts in a consumer and server name.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

func applyClusterDefaults(c *Config) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	if cl.Replicas == 0 {
		cl.Replicas = DefaultClusterReplicas
	}
	if cl.Sync == "" {
		cl.Sync = DefaultClusterSync
	}
	if cl.PublishTimeout == 0 {
		cl.PublishTimeout = Duration(DefaultClusterPublishTimeout)
	}
	if cl.ClaimLease == 0 {
		cl.ClaimLease = Duration(DefaultClusterClaimLease)
	}
	if e := cl.NATS.Embedded; e != nil && e.StoreDir == "" && c.DataDir != "" {
		e.StoreDir = filepath.Join(c.DataDir, DefaultClusterStoreSubdir)
	}
}

func (c *Config) validateCluster(v *validator) {
	cl := c.Cluster
	if cl == nil {
		return
	}
	if !nodeName.MatchString(cl.Node) {
		v.bad("cluster.node", "%q: want a name of letters, digits, - and _ (up to 63), unique in the cluster", cl.Node)
	}
	if cl.Replicas < 1 || cl.Replicas > MaxClusterReplicas {
		v.bad("cluster.replicas", "%d: want 1 to %d (NATS JetStream's limit); 3 keeps the stream writable with one node down", cl.Replicas, MaxClusterReplicas)
	}
	if cl.Sync != SyncAlways && cl.Sync != SyncDefault {
		v.bad("cluster.sync", "%q: want always or default", cl.Sync)
	}
	if c.SMTP.MaxMessageBytes > MaxClusterMessageBytes {
		v.bad("smtp.max_message_bytes", "%d: in cluster mode at most %d (a record of the stream carries the message)", c.SMTP.MaxMessageBytes, MaxClusterMessageBytes)
	}
	if cl.PublishTimeout.D() <= 0 {
		v.bad("cluster.publish_timeout", "must be positive")
	}
	switch lease := cl.ClaimLease.D(); {
	case lease < MinClusterClaimLease:
		v.bad("cluster.claim_lease", "%s: at least %s (the reporter waits up to %s for the desk's answer to the final dot; a claim that ran out meanwhile would let another node send the same report again)",
			lease, MinClusterClaimLease, ReporterDataTimeout)
	case c.Reporter.Retry.GiveUpAfter.D() > 0 && lease >= c.Reporter.Retry.GiveUpAfter.D():
		v.bad("cluster.claim_lease", "%s: must be shorter than reporter.retry.give_up_after (%s), or a dead node's reports are given up before another node may take them over",
			lease, c.Reporter.Retry.GiveUpAfter.D())
	}
	n := &cl.NATS
	switch {
	case n.URL == "" && n.Embedded == nil:
		v.bad("cluster.nats", "set nats.url (an existing NATS cluster) or nats.embedded (the server built into xarfd)")
	case n.URL != "" && n.Embedded != nil:
		v.bad("cluster.nats.url", "set either nats.url or nats.embedded, not both")
	}
	if n.URL != "" {
		for i, u := range strings.Split(n.URL, ",") {
			natsURL(v, "cluster.nats.url", i, strings.TrimSpace(u))
		}
		if n.CredsFile != "" && n.User != "" {
			v.bad("cluster.nats.creds_file", "set either creds_file or user, not both")
		}
	}
	if n.User != "" && n.PasswordFile == "" {
		v.bad("cluster.nats.password_file", "is required with cluster.nats.user")
	}
	if n.User == "" && n.PasswordFile != "" {
		v.bad("cluster.nats.user", "is required with cluster.nats.password_file")
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		v.bad("cluster.nats.tls", "cert_file and key_file go together")
	}
	if e := n.Embedded; e != nil {
		if n.CredsFile != "" {
			v.bad("cluster.nats.creds_file", "applies to nats.url only; the embedded servers authenticate their routes with user and password_file")
		}
		if n.TLS.Enabled() && (n.TLS.CertFile == "" || n.TLS.CAFile == "") {
			v.bad("cluster.nats.tls", "the embedded servers' routes use mutual TLS: cert_file, key_file and ca_file are all required")
		}
		if e.Listen != "" {
			v.hostPort("cluster.nats.embedded.listen", e.Listen)
		}
		if e.ClusterListen == "" {
			v.bad("cluster.nats.embedded.cluster_listen", "is required: the other nodes' routes connect there")
		} else {
			v.hostPort("cluster.nats.embedded.cluster_listen", e.ClusterListen)
		}
		if e.ClusterAdvertise != "" {
			v.hostPort("cluster.nats.embedded.cluster_advertise", e.ClusterAdvertise)
		}
		for i, r := range e.Routes {
			natsURL(v, "cluster.nats.embedded.routes", i, r)
		}
		if len(e.Routes) == 0 && cl.Replicas > 1 {
			v.bad("cluster.nats.embedded.routes", "is empty, but cluster.replicas is %d: list the other nodes' cluster_listen", cl.Replicas)
		}
		if e.StoreDir == "" {
			v.bad("cluster.nats.embedded.store_dir", "must not be empty")
		}
	}
}

func natsURL(v *validator, key string, i int, s string) {
	k := fmt.Sprintf("%s[%d]", key, i)
	if !strings.HasSuffix(key, "routes") {
		k = key
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "nats" && u.Scheme != "tls" && u.Scheme != "nats-route") {
		v.bad(k, "%q: want nats://host:port", s)
		return
	}
	if u.User != nil {
		v.bad(k, "%q: credentials do not belong in the URL; use cluster.nats.user and password_file", s)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		v.bad(k, "%q: want nats://host:port", s)
	}
}
