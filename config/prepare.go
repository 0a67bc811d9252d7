package config

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Resources are the files a configuration names, read and parsed. Both
// `xarfd check-config` and `xarfd serve` (at start and at every reload)
// get them from Prepare, so that a file check-config passes is one serve
// accepts, and a reload is refused for exactly what check-config reports.
type Resources struct {
	// TLSCert is smtp.tls's certificate and key; nil when TLS is off.
	TLSCert *tls.Certificate
	// Users is smtp.auth_file as Parsers.Users read it; nil without one.
	Users UserSet
	// HMACKeys are the channels' redact.hmac_key_file keys, by channel.
	HMACKeys map[string][]byte
	// DKIMKey is reporter.dkim's key; nil when outbound DKIM is off.
	DKIMKey crypto.Signer
	// SmarthostPassword is reporter.smarthost.password_file's content.
	SmarthostPassword string
	// NATSPassword is cluster.nats.password_file's content.
	NATSPassword string
}

// UserSet is the part of a parsed auth file that configuration checks
// need: which names it defines.
type UserSet interface {
	Has(name string) bool
}

// Parsers read the files whose formats belong to other packages (config
// imports none of ours). A nil parser leaves that file unparsed, only read.
type Parsers struct {
	// Users parses smtp.auth_file (auth.ParseUsers); errors name the file
	// and line.
	Users func(data []byte, path string) (UserSet, error)
	// PrivateKey parses reporter.dkim.private_key_file's PEM.
	PrivateKey func(pem []byte) (crypto.Signer, error)
}

// MinHMACKey is the shortest redact.hmac_key_file key accepted: a shorter
// one makes the pseudonyms guessable from a list of likely addresses.
const MinHMACKey = 16

// Prepare reads and parses every file c names (TLS certificate and key,
// the SMTP AUTH users, HMAC keys, DKIM key, smarthost password) and checks
// what depends on their content (each accept_from.users name is defined in
// the auth file). It reports every problem at once, each naming the
// configuration file, the line and the key, and the file that is wrong.
func (c *Config) Prepare(p Parsers) (*Resources, error) {
	v := &validator{c: c}
	res := &Resources{HMACKeys: map[string][]byte{}}
	read := func(key, path string) ([]byte, bool) {
		b, err := os.ReadFile(path)
		if err != nil {
			v.bad(key, "cannot read %s: %v", path, pathErr(err))
			return nil, false
		}
		return b, true
	}

	if t := c.SMTP.TLS; t.CertFile != "" && t.KeyFile != "" {
		cert, okc := read("smtp.tls.cert_file", t.CertFile)
		key, okk := read("smtp.tls.key_file", t.KeyFile)
		if okc && okk {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				v.bad("smtp.tls", "certificate %s and key %s: %v", t.CertFile, t.KeyFile, strings.TrimPrefix(err.Error(), "tls: "))
			} else {
				res.TLSCert = &pair
			}
		}
	}

	usersOK := false
	if path := c.SMTP.AuthFile; path != "" {
		if b, ok := read("smtp.auth_file", path); ok && p.Users != nil {
			u, err := p.Users(b, path)
			if err != nil {
				v.bad("smtp.auth_file", "%v", err)
			} else {
				res.Users, usersOK = u, true
			}
		}
	}
	for i := range c.Channels {
		ch := &c.Channels[i]
		k := fmt.Sprintf("channels[%d]", i)
		if usersOK {
			for j, name := range ch.AcceptFrom.Users {
				if !res.Users.Has(name) {
					v.bad(fmt.Sprintf("%s.accept_from.users[%d]", k, j), "%q is not a user of smtp.auth_file %s", name, c.SMTP.AuthFile)
				}
			}
		}
		if r := ch.Redact; r.Mode == RedactHMAC && r.HMACKeyFile != "" {
			if b, ok := read(k+".redact.hmac_key_file", r.HMACKeyFile); ok {
				key := bytes.TrimSpace(b)
				if len(key) < MinHMACKey {
					v.bad(k+".redact.hmac_key_file", "%s holds %d bytes of key, want at least %d", r.HMACKeyFile, len(key), MinHMACKey)
				} else {
					res.HMACKeys[ch.Name] = key
				}
			}
		}
	}

	if path := c.Reporter.Smarthost.PasswordFile; path != "" {
		if b, ok := read("reporter.smarthost.password_file", path); ok {
			res.SmarthostPassword = strings.TrimRight(string(b), "\r\n")
			if res.SmarthostPassword == "" {
				v.bad("reporter.smarthost.password_file", "%s is empty", path)
			}
		}
	}
	if d := c.Reporter.DKIM; d.Domain != "" && d.Selector != "" && d.PrivateKeyFile != "" {
		if b, ok := read("reporter.dkim.private_key_file", d.PrivateKeyFile); ok && p.PrivateKey != nil {
			k, err := p.PrivateKey(b)
			if err != nil {
				v.bad("reporter.dkim.private_key_file", "%s: %v", d.PrivateKeyFile, err)
			} else {
				res.DKIMKey = k
			}
		}
	}
	c.prepareCluster(v, res, read)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return res, nil
}

// prepareCluster checks the files of cluster.nats: the certificate and
// key must match, the CA must hold a certificate, the credentials and the
// password must be readable and not empty. The cluster package reads them
// again when it connects (NATS takes file names).
func (c *Config) prepareCluster(v *validator, res *Resources, read func(key, path string) ([]byte, bool)) {
	if c.Cluster == nil {
		return
	}
	n := &c.Cluster.NATS
	if t := n.TLS; t.CertFile != "" && t.KeyFile != "" {
		cert, okc := read("cluster.nats.tls.cert_file", t.CertFile)
		key, okk := read("cluster.nats.tls.key_file", t.KeyFile)
		if okc && okk {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				v.bad("cluster.nats.tls", "certificate %s and key %s: %v", t.CertFile, t.KeyFile, strings.TrimPrefix(err.Error(), "tls: "))
			}
		}
	}
	if path := n.TLS.CAFile; path != "" {
		if b, ok := read("cluster.nats.tls.ca_file", path); ok && !x509.NewCertPool().AppendCertsFromPEM(b) {
			v.bad("cluster.nats.tls.ca_file", "%s holds no PEM certificate", path)
		}
	}
	if path := n.CredsFile; path != "" {
		if b, ok := read("cluster.nats.creds_file", path); ok && !bytes.Contains(b, []byte("NATS USER JWT")) {
			v.bad("cluster.nats.creds_file", "%s is not a NATS credentials file (no USER JWT block)", path)
		}
	}
	if path := n.PasswordFile; path != "" {
		if b, ok := read("cluster.nats.password_file", path); ok {
			res.NATSPassword = strings.TrimRight(string(b), "\r\n")
			if res.NATSPassword == "" {
				v.bad("cluster.nats.password_file", "%s is empty", path)
			}
		}
	}
}

// pathErr drops the "open /path" of an *fs.PathError: the message names
// the path already.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
