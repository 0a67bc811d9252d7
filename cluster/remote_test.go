package cluster_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/cluster"
	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/syncbuf"
	"github.com/xarfd/xarfd/store"
)

// pki is a test CA and the PEM files of certificates it signed, in dir.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	CA   string // the CA's certificate file
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), cert: cert, key: key}
	p.CA = p.write(t, name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for 127.0.0.1, usable by a server and a
// client (routes are both), and returns its cert and key files.
func (p *pki) issue(t *testing.T, name string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

// startNATS runs a single NATS server with JetStream on 127.0.0.1 and a
// random port, with the options edit sets, until t ends.
func startNATS(t *testing.T, edit func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{ServerName: "remote", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MaxPayload: cluster.MaxPayload}
	edit(o)
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	return s
}

// remoteConfig is a node's configuration with the cluster block
// "cluster:\n  node: name\n  replicas: 1\n" followed by nats (indented
// by four spaces).
func remoteConfig(t *testing.T, name, nats string) *config.Config {
	t.Helper()
	return remoteConfigWith(t, name, "", nats)
}

// remoteConfigWith is remoteConfig with top (top-level keys) added.
func remoteConfigWith(t *testing.T, name, top, nats string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	y := clustertest.Base + top + "data_dir: " + dir + "\ncluster:\n  node: " + name + "\n  replicas: 1\n  publish_timeout: 3s\n  nats:\n" + nats
	cfg, err := config.Parse([]byte(y), name+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startNode starts a node of cfg on a fresh store; it is closed when t
// ends.
func startNode(t *testing.T, cfg *config.Config, res *config.Resources) (*clustertest.Member, error) {
	t.Helper()
	return startNodeLog(t, cfg, res, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
}

// startNodeLog is startNode logging to log.
func startNodeLog(t *testing.T, cfg *config.Config, res *config.Resources, log zerolog.Logger) (*clustertest.Member, error) {
	t.Helper()
	st, err := store.Open(cfg.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Start(cfg, res, st, cluster.Options{Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	t.Cleanup(func() {
		n.Close()
		st.Close()
	})
	return &clustertest.Member{Name: cfg.Cluster.Node, Store: st, Node: n}, nil
}

// roundTrip publishes a record on a and waits until b (the same node or
// another) has applied it from the stream.
func roundTrip(t *testing.T, a, b *clustertest.Member) {
	t.Helper()
	clustertest.Eventually(t, 30*time.Second, a.Name+" healthy", func() string {
		if h := a.Node.Health(); !h.OK {
			return h.Reason
		}
		return ""
	})
	e := entry(t, "over "+a.Name)
	if _, err := a.Node.Commit([]store.Entry{e}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 30*time.Second, "record on "+b.Name, func() string { return has(b, e) })
}

// noSecret fails when err's text holds secret.
func noSecret(t *testing.T, err error, secret string) {
	t.Helper()
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error shows the secret: %v", err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRemoteUserPassword(t *testing.T) {
	const password = "s3cret-Pa55"
	s := startNATS(t, func(o *server.Options) { o.Username, o.Password = "xarfd", password })
	pwFile := writeFile(t, "password", password+"\n")
	block := fmt.Sprintf("    url: %q\n    user: xarfd\n    password_file: %q\n", s.ClientURL(), pwFile)

	t.Run("right password", func(t *testing.T) {
		cfg := remoteConfig(t, "mx1", block)
		res, err := cfg.Prepare(config.Parsers{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := startNode(t, cfg, res)
		if err != nil {
			t.Fatal(err)
		}
		// A second node on the same server gets the record through its
		// own consumer.
		m2, err := startNode(t, remoteConfig(t, "mx2", block), res)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, m, m2)
	})
	t.Run("wrong password", func(t *testing.T) {
		const wrong = "not-the-Pa55"
		cfg := remoteConfig(t, "mx3", block)
		_, err := startNode(t, cfg, &config.Resources{NATSPassword: wrong})
		if err == nil {
			t.Fatal("a node with a wrong password started")
		}
		t.Log(err)
		if !strings.Contains(err.Error(), "authorization") && !strings.Contains(err.Error(), "authentication") {
			t.Errorf("the error does not say authentication failed: %v", err)
		}
		noSecret(t, err, wrong)
		noSecret(t, err, password)
	})
}

func TestRemoteTLS(t *testing.T) {
	ca := newPKI(t, "nats")
	srvCert, srvKey := ca.issue(t, "server", 2)
	cliCert, cliKey := ca.issue(t, "client", 3)
	s := startNATS(t, func(o *server.Options) {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srvCert, KeyFile: srvKey, CaFile: ca.CA, Verify: true})
		if err != nil {
			t.Fatal(err)
		}
		o.TLSConfig, o.TLS, o.TLSVerify, o.TLSTimeout = tc, true, true, 5
	})
	block := func(caFile string) string {
		return fmt.Sprintf("    url: %q\n    tls: {ca_file: %q, cert_file: %q, key_file: %q}\n", s.ClientURL(), caFile, cliCert, cliKey)
	}

	t.Run("trusted CA and client certificate", func(t *testing.T) {
		m, err := startNode(t, remoteConfig(t, "mx1", block(ca.CA)), &config.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, m, m)
	})
	t.Run("untrusted CA", func(t *testing.T) {
		other := newPKI(t, "other")
		_, err := startNode(t, remoteConfig(t, "mx2", block(other.CA)), &config.Resources{})
		if err == nil {
			t.Fatal("a node that does not trust the server's CA started")
		}
		t.Log(err)
		if !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "cluster.nats.tls") {
			t.Errorf("the error does not say the server's certificate was refused: %v", err)
		}
	})
}

// embeddedTLS is the configuration of node name of a cluster of embedded
// servers with mutual TLS on the routes, on ports.
func embeddedTLS(t *testing.T, name string, port int, ports []int, cert, key, caFile string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	block := strings.Replace(clustertest.YAML(name, port, ports, 2, filepath.Join(dir, "nats")), "    embedded:",
		fmt.Sprintf("    tls: {ca_file: %q, cert_file: %q, key_file: %q}\n    user: route\n    password_file: %q\n    embedded:", caFile, cert, key, writeFile(t, "pw", "route-pw")), 1)
	cfg, err := config.Parse([]byte(clustertest.Base+"data_dir: "+dir+"\n"+block), name+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestEmbeddedTLSRoutes(t *testing.T) {
	ca := newPKI(t, "routes")
	ports := clustertest.FreePorts(t, 3)
	res := &config.Resources{NATSPassword: "route-pw"}
	var ms []*clustertest.Member
	for i, name := range []string{"n1", "n2"} {
		cert, key := ca.issue(t, name, int64(10+i))
		m, err := startNode(t, embeddedTLS(t, name, ports[i], ports, cert, key, ca.CA), res)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	// Two replicas: the stream exists only once both servers formed a
	// JetStream cluster over their TLS routes.
	roundTrip(t, ms[0], ms[1])
	for _, m := range ms {
		if n := m.Node.Server().NumRoutes(); n == 0 {
			t.Errorf("%s: no route", m.Name)
		}
	}

	// A third server whose certificate another CA signed (and which
	// trusts only that CA) is refused by both, and refuses them.
	other := newPKI(t, "intruder")
	cert, key := other.issue(t, "n3", 20)
	m3, err := startNode(t, embeddedTLS(t, "n3", ports[2], ports, cert, key, other.CA), res)
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, m3, ms)

	// A fourth with a certificate of the right CA but the wrong route
	// password is refused too.
	p4 := clustertest.FreePorts(t, 1)[0]
	cert, key = ca.issue(t, "n4", 21)
	m4, err := startNode(t, embeddedTLS(t, "n4", p4, append(ports[:2:2], p4), cert, key, ca.CA), &config.Resources{NATSPassword: "wrong-pw"})
	if err != nil {
		t.Fatal(err)
	}
	isolated(t, m4, ms)
}

// isolated checks that m formed no lasting route with any of others.
// A route that is refused shows for a moment all the same: the soliciting
// server registers it on the peer's INFO, before the peer reads (and
// refuses) its CONNECT. So a route counts once it has lived longer than
// any handshake: routes are retried every second, and in five seconds
// none may grow older than routeSettled.
func isolated(t *testing.T, m *clustertest.Member, others []*clustertest.Member) {
	t.Helper()
	const routeSettled = 3 * time.Second
	lasting := func(s *server.Server, remote string) *server.RouteInfo {
		rs, err := s.Routez(nil)
		if err != nil || rs == nil {
			return nil
		}
		for _, r := range rs.Routes {
			if (remote == "" || r.RemoteName == remote) && time.Since(r.Start) > routeSettled {
				return r
			}
		}
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r := lasting(m.Node.Server(), ""); r != nil {
			t.Fatalf("%s holds a route to %s since %s", m.Name, r.RemoteName, r.Start)
		}
		for _, o := range others {
			if r := lasting(o.Node.Server(), m.Name); r != nil {
				t.Fatalf("%s holds a route to %s since %s", o.Name, m.Name, r.Start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h := m.Node.Health(); h.OK {
		t.Errorf("%s is healthy without joining: %+v", m.Name, h)
	}
}

// operator is a NATS operator with a JetStream account, as nsc makes
// them, held by a memory resolver.
type operator struct {
	claims *jwt.OperatorClaims
	key    nkeys.KeyPair
	sys    string
	res    *server.MemAccResolver
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	op := &operator{key: okp, res: &server.MemAccResolver{}}
	sys := op.account(t, false)
	oc.SystemAccount = sys.pub
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	if op.claims, err = jwt.DecodeOperatorClaims(ojwt); err != nil {
		t.Fatal(err)
	}
	op.sys = sys.pub
	return op
}

type account struct {
	pub string
	key nkeys.KeyPair
}

// account registers a new account; jetstream gives it unlimited
// JetStream.
func (op *operator) account(t *testing.T, jetstream bool) account {
	t.Helper()
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	if jetstream {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	ajwt, err := ac.Encode(op.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := op.res.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	return account{pub: apub, key: akp}
}

// creds writes a credentials file of a new user of a (signed by signer,
// which is a's key unless an intruder forges it).
func creds(t *testing.T, signer nkeys.KeyPair, issuerAccount string) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.IssuerAccount = issuerAccount
	ujwt, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	b, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.creds", string(b))
}

func TestRemoteCredsFile(t *testing.T) {
	op := newOperator(t)
	acct := op.account(t, true)
	s := startNATS(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{op.claims}
		o.SystemAccount = op.sys
		o.AccountResolver = op.res
	})
	block := func(file string) string { return fmt.Sprintf("    url: %q\n    creds_file: %q\n", s.ClientURL(), file) }

	t.Run("valid credentials", func(t *testing.T) {
		cfg := remoteConfig(t, "mx1", block(creds(t, acct.key, "")))
		if _, err := cfg.Prepare(config.Parsers{}); err != nil {
			t.Fatal(err)
		}
		m, err := startNode(t, cfg, &config.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, m, m)
	})
	t.Run("user of an account the server does not know", func(t *testing.T) {
		stranger, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		_, err = startNode(t, remoteConfig(t, "mx2", block(creds(t, stranger, ""))), &config.Resources{})
		if err == nil {
			t.Fatal("a node with credentials of an unknown account started")
		}
		t.Log(err)
		if !strings.Contains(err.Error(), "creds_file") {
			t.Errorf("the error does not name creds_file: %v", err)
		}
		if strings.Contains(err.Error(), "SUA") {
			t.Errorf("the error shows a seed: %v", err)
		}
	})
}

// A server not up yet is no configuration error: the node starts and
// connects when the server comes.
func TestRemoteServerLater(t *testing.T) {
	port := clustertest.FreePorts(t, 1)[0]
	m, err := startNode(t, remoteConfig(t, "mx1", fmt.Sprintf("    url: \"nats://127.0.0.1:%d\"\n", port)), &config.Resources{})
	if err != nil {
		t.Fatalf("a node whose server is not up yet did not start: %v", err)
	}
	if h := m.Node.Health(); h.OK {
		t.Errorf("healthy without a server: %+v", h)
	}
	startNATS(t, func(o *server.Options) { o.Port = port })
	roundTrip(t, m, m)
}

// A password changed on the server while the node runs: the failed
// reconnects say so in the log, once (not four lines a second).
func TestRemotePasswordChangedWhileRunning(t *testing.T) {
	const password = "first-Pa55"
	port := clustertest.FreePorts(t, 1)[0]
	s := startNATS(t, func(o *server.Options) { o.Username, o.Password, o.Port = "xarfd", password, port })
	block := fmt.Sprintf("    url: %q\n    user: xarfd\n    password_file: %q\n", s.ClientURL(), writeFile(t, "password", password))
	logs := &syncbuf.Buffer{}
	m, err := startNodeLog(t, remoteConfig(t, "mx1", block), &config.Resources{NATSPassword: password}, zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, m, m)
	s.Shutdown()
	s.WaitForShutdown()
	startNATS(t, func(o *server.Options) { o.Username, o.Password, o.Port = "xarfd", "second-Pa55", port })
	const line = "reconnecting to NATS failed: authentication failed (check cluster.nats.user and password_file)"
	clustertest.Eventually(t, 30*time.Second, "the reconnect failure logged", func() string {
		if !strings.Contains(logs.String(), line) {
			return "not yet"
		}
		return ""
	})
	// Several attempts later, still one line.
	time.Sleep(2 * time.Second)
	if n := strings.Count(logs.String(), line); n != 1 {
		t.Errorf("%d lines for the failed reconnects, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), password) || strings.Contains(logs.String(), "second-Pa55") {
		t.Errorf("a password reached the log:\n%s", logs.String())
	}
}
