package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
)

// ClusterName is the NATS cluster name of the embedded servers: routes
// from servers of another name are refused.
const ClusterName = "xarfd"

// MaxPayload is the embedded servers' largest message (see
// config.ClusterMaxPayload).
const MaxPayload = config.ClusterMaxPayload

// readyTimeout bounds the wait for the embedded server's listeners.
const readyTimeout = 10 * time.Second

// serverOptions are the embedded NATS server's options for cfg.
func serverOptions(cfg *config.Config, res *config.Resources) (*server.Options, error) {
	cl := cfg.Cluster
	e := cl.NATS.Embedded
	o := &server.Options{
		ServerName: cl.Node,
		JetStream:  true,
		StoreDir:   e.StoreDir,
		SyncAlways: cl.Sync == config.SyncAlways,
		MaxPayload: MaxPayload,
		MaxPending: 2 * MaxPayload,
		NoSigs:     true,
		// DontListen would be the natural choice without a client port
		// (xarfd connects in-process), but the server then never starts
		// its routes: a loopback port the kernel picks instead.
		Host: "127.0.0.1",
		Port: server.RANDOM_PORT,
	}
	if e.Listen != "" {
		host, port, err := splitHostPort(e.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster.nats.embedded.listen: %w", err)
		}
		o.Host, o.Port = host, port
	}
	host, port, err := splitHostPort(e.ClusterListen)
	if err != nil {
		return nil, fmt.Errorf("cluster.nats.embedded.cluster_listen: %w", err)
	}
	o.Cluster = server.ClusterOpts{Name: ClusterName, Host: host, Port: port, ConnectRetries: -1, Advertise: e.ClusterAdvertise}
	if cl.NATS.User != "" {
		o.Cluster.Username, o.Cluster.Password = cl.NATS.User, res.NATSPassword
	}
	for i, r := range e.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("cluster.nats.embedded.routes[%d]: %w", i, err)
		}
		if cl.NATS.User != "" {
			u.User = url.UserPassword(cl.NATS.User, res.NATSPassword)
		}
		if selfRoute(u, host, port) {
			// The shared list names this node too. NATS ignores a route
			// to itself once connected, but counts it as a peer when the
			// JetStream cluster first forms: three listed and one of the
			// others down, the two up would never elect a leader.
			continue
		}
		o.Routes = append(o.Routes, u)
	}
	if t := cl.NATS.TLS; t.Enabled() {
		tc, err := tlsConfig(t, true)
		if err != nil {
			return nil, err
		}
		o.Cluster.TLSConfig, o.Cluster.TLSTimeout = tc, 5
		if e.Listen != "" {
			o.TLSConfig, o.TLSTimeout = tc.Clone(), 5
			o.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
			o.TLS, o.TLSVerify = true, false
		}
	}
	return o, nil
}

// tlsConfig builds a TLS configuration from cluster.nats.tls. mutual
// (the embedded servers' routes) requires and verifies the peer's
// certificate against the CA, in both directions.
func tlsConfig(t config.NATSTLS, mutual bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.nats.tls: loading %s and %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.nats.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster.nats.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs, tc.ClientCAs = pool, pool
	}
	if mutual {
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// selfRoute reports whether route points at this server's own route
// listener host:port: the same port, and an address of this host (any
// of them when listening on all). A name that does not resolve in a
// second is kept (a route to nowhere only costs retries).
func selfRoute(route *url.URL, host string, port int) bool {
	p, err := strconv.Atoi(route.Port())
	if err != nil || p != port {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", route.Hostname())
	if err != nil || len(addrs) == 0 {
		return false
	}
	listen, err := netip.ParseAddr(host)
	if err == nil && !listen.IsUnspecified() {
		for _, a := range addrs {
			if a.Unmap() != listen.Unmap() {
				return false
			}
		}
		return true
	}
	local, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		mine := false
		for _, l := range local {
			if pfx, err := netip.ParsePrefix(l.String()); err == nil && pfx.Addr().Unmap() == a.Unmap() {
				mine = true
			}
		}
		if !mine {
			return false
		}
	}
	return true
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// startServer starts the embedded NATS server and waits for its
// listeners; the JetStream cluster forms in the background as the other
// nodes' routes connect.
func startServer(o *server.Options, log zerolog.Logger) (*server.Server, error) {
	if err := os.MkdirAll(o.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating cluster.nats.embedded.store_dir: %w", err)
	}
	s, err := server.NewServer(o)
	if err != nil {
		return nil, fmt.Errorf("configuring the embedded NATS server: %w", err)
	}
	s.SetLoggerV2(natsLogger{log}, false, false, false)
	s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("the embedded NATS server did not start listening (is cluster.nats.embedded.cluster_listen in use?)")
	}
	return s, nil
}

// natsLogger writes the embedded server's log lines through zerolog, one
// level down: NATS is chatty at notice level (every route, every
// election), which is debug for an xarfd operator.
type natsLogger struct{ log zerolog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug().Msg(msg(format, v)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn().Msg(msg(format, v)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error().Msg(msg(format, v)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error().Msg(msg(format, v)) }
func (l natsLogger) Debugf(format string, v ...any)  {}
func (l natsLogger) Tracef(format string, v ...any)  {}

func msg(format string, v []any) string { return strings.TrimSpace(fmt.Sprintf(format, v...)) }
