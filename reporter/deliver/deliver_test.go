package deliver

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/xarfd/xarfd/config"
)

func TestGroups(t *testing.T) {
	rcpts := []string{"a@one.example", "b@two.example", "c@One.example"}
	if got, want := (&SMTP{}).Groups(rcpts), [][]string{{"a@one.example", "c@One.example"}, {"b@two.example"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("MX groups %v, want %v", got, want)
	}
	if got, want := (&SMTP{Smarthost: "127.0.0.1:25"}).Groups(rcpts), [][]string{rcpts}; !reflect.DeepEqual(got, want) {
		t.Errorf("smarthost groups %v, want %v", got, want)
	}
	if got := (&SMTP{}).Groups(nil); got != nil {
		t.Errorf("no recipients: %v", got)
	}
}

// TestSignerVerifies: a signed report verifies against the public key,
// and the signature covers the fields a desk relies on.
func TestSignerVerifies(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "dkim.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := NewSigner(&config.DKIM{}); s != nil || err != nil {
		t.Fatalf("unconfigured DKIM: %v %v", s, err)
	}
	s, err := NewSigner(&config.DKIM{Domain: "xarfd.example", Selector: "s1", PrivateKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: abuse@xarfd.example\r\nTo: desk@isp.example\r\nSubject: Abuse report\r\nMessage-ID: <x@xarfd.example>\r\n\r\nbody\r\n")
	signed, err := s.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	txt := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != "s1._domainkey.xarfd.example" {
			t.Errorf("looked up %s", name)
		}
		return []string{txt}, nil
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "xarfd.example" {
		t.Fatalf("verification: %+v %v", vs, err)
	}
	for _, f := range []string{"from", "to", "subject", "message-id"} {
		found := false
		for _, k := range vs[0].HeaderKeys {
			found = found || strings.EqualFold(k, f)
		}
		if !found {
			t.Errorf("signature does not cover %s: %v", f, vs[0].HeaderKeys)
		}
	}
}

// cluster.claim_lease's floor is derived from the wait after the final
// dot: a longer wait here than the config knows of would let a claim run
// out while a desk may still accept the report.
func TestDataTimeoutIsTheClaimLeaseFloor(t *testing.T) {
	if DefaultDataTimeout != config.ReporterDataTimeout {
		t.Errorf("DefaultDataTimeout %v, config.ReporterDataTimeout %v: keep them equal", DefaultDataTimeout, config.ReporterDataTimeout)
	}
	if config.MinClusterClaimLease <= DefaultDataTimeout {
		t.Errorf("MinClusterClaimLease %v is not above the wait after the dot, %v", config.MinClusterClaimLease, DefaultDataTimeout)
	}
}
