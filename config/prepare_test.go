package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// names is a stand-in for auth.Users: "name:anything" lines.
type names map[string]bool

func (n names) Has(s string) bool { return n[s] }

var testParsers = Parsers{
	Users: func(b []byte, path string) (UserSet, error) {
		n := names{}
		for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			name, _, ok := strings.Cut(l, ":")
			if !ok {
				return nil, fmt.Errorf("%s:%d: want \"name:hash\"", path, i+1)
			}
			n[name] = true
		}
		return n, nil
	},
	PrivateKey: func(b []byte) (crypto.Signer, error) {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, errors.New("no PEM block")
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		return k.(crypto.Signer), nil
	},
}

// testFiles writes a valid file for every resource into dir.
func testFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.net"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"mx.example.net"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ck.PublicKey, ck)
	if err != nil {
		t.Fatal(err)
	}
	ckDER, _ := x509.MarshalPKCS8PrivateKey(ck)
	_, dk, _ := ed25519.GenerateKey(rand.Reader)
	dkDER, _ := x509.MarshalPKCS8PrivateKey(dk)
	files := map[string]string{
		"cert":  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"key":   string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ckDER})),
		"users": "partner1:$2b$hash\n",
		"hmac":  "0123456789abcdef0123456789abcdef\n",
		"pw":    "secret\n",
		"dkim":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: dkDER})),
	}
	paths := map[string]string{}
	for name, content := range files {
		paths[name] = filepath.Join(dir, name)
		if err := os.WriteFile(paths[name], []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

func prepareYAML(p map[string]string) string {
	return `
hostname: mx.example.net
sender: {org: Example, contact: abuse@example.net, domain: example.net}
smtp:
  tls: {cert_file: ` + p["cert"] + `, key_file: ` + p["key"] + `}
  auth_file: ` + p["users"] + `
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@example.net"]
    accept_from: {users: [partner1]}
    redact: {recipients: true, mode: hmac, hmac_key_file: ` + p["hmac"] + `}
reporter:
  smarthost: {address: "smtp.example.net:587", username: xarfd, password_file: ` + p["pw"] + `}
  dkim: {domain: example.net, selector: xarfd, private_key_file: ` + p["dkim"] + `}
`
}

func TestPrepareReadsEveryResource(t *testing.T) {
	p := testFiles(t, t.TempDir())
	c, err := Parse([]byte(prepareYAML(p)), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Prepare(testParsers)
	if err != nil {
		t.Fatal(err)
	}
	if res.TLSCert == nil || res.Users == nil || !res.Users.Has("partner1") || res.DKIMKey == nil ||
		res.SmarthostPassword != "secret" || string(res.HMACKeys["fbl"]) != "0123456789abcdef0123456789abcdef" {
		t.Errorf("resources = %+v", res)
	}
}

// TestPrepareErrors has one case per file problem that serve would meet;
// each error names the configuration file, the line, the key and the
// file that is wrong.
func TestPrepareErrors(t *testing.T) {
	cases := []struct {
		name   string
		change func(p map[string]string, yaml string) string
		want   []string
	}{
		{"user not in the auth file", func(p map[string]string, y string) string {
			return strings.Replace(y, "users: [partner1]", "users: [partner1, partner2]", 1)
		}, []string{"x.yaml:11: channels[0].accept_from.users[1]:", `"partner2" is not a user of smtp.auth_file`}},
		{"garbage auth file", func(p map[string]string, y string) string {
			os.WriteFile(p["users"], []byte("no colon here\n"), 0o600)
			return y
		}, []string{"x.yaml:6: smtp.auth_file:", p0("users") + ":1:"}},
		{"missing auth file", func(p map[string]string, y string) string {
			os.Remove(p["users"])
			return y
		}, []string{"x.yaml:6: smtp.auth_file: cannot read", "no such file"}},
		{"missing DKIM key", func(p map[string]string, y string) string {
			os.Remove(p["dkim"])
			return y
		}, []string{"x.yaml:15: reporter.dkim.private_key_file: cannot read " + p0("dkim")}},
		{"unreadable DKIM key", func(p map[string]string, y string) string {
			os.Remove(p["dkim"])
			os.Mkdir(p["dkim"], 0o700) // reading a directory fails for root too
			return y
		}, []string{"reporter.dkim.private_key_file: cannot read " + p0("dkim")}},
		{"garbage DKIM key", func(p map[string]string, y string) string {
			os.WriteFile(p["dkim"], []byte("not a key\n"), 0o600)
			return y
		}, []string{"x.yaml:15: reporter.dkim.private_key_file: " + p0("dkim") + ": no PEM block"}},
		{"missing TLS certificate", func(p map[string]string, y string) string {
			os.Remove(p["cert"])
			return y
		}, []string{"x.yaml:5: smtp.tls.cert_file: cannot read " + p0("cert")}},
		{"garbage TLS key", func(p map[string]string, y string) string {
			os.WriteFile(p["key"], []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
			return y
		}, []string{"x.yaml:5: smtp.tls: certificate " + p0("cert") + " and key " + p0("key")}},
		{"short HMAC key", func(p map[string]string, y string) string {
			os.WriteFile(p["hmac"], []byte("short\n"), 0o600)
			return y
		}, []string{"x.yaml:12: channels[0].redact.hmac_key_file: " + p0("hmac") + " holds 5 bytes of key, want at least 16"}},
		{"missing HMAC key", func(p map[string]string, y string) string {
			os.Remove(p["hmac"])
			return y
		}, []string{"channels[0].redact.hmac_key_file: cannot read " + p0("hmac")}},
		{"empty smarthost password", func(p map[string]string, y string) string {
			os.WriteFile(p["pw"], []byte("\n"), 0o600)
			return y
		}, []string{"x.yaml:14: reporter.smarthost.password_file: " + p0("pw") + " is empty"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := testFiles(t, dir)
			y := tc.change(p, prepareYAML(p))
			c, err := Parse([]byte(y), "x.yaml")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Prepare(testParsers)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "<dir>", dir)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// p0 names a test file in the case's directory.
func p0(name string) string { return "<dir>/" + name }
