package deliver

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/xarfd/xarfd/config"
)

// signedHeaders are the fields the DKIM signature covers (RFC 6376
// section 5.4.1), From first; fields a message lacks are signed as absent
// so that nobody can add them later.
func signedHeaders() []string {
	return []string{"From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
		"Auto-Submitted", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}
}

// Signer DKIM-signs outbound reports (relaxed/relaxed, SHA-256).
type Signer struct {
	domain, selector string
	key              crypto.Signer
}

// NewSigner reads the key of cfg; it returns nil, nil when DKIM is not
// configured.
func NewSigner(cfg *config.DKIM) (*Signer, error) {
	if cfg.Domain == "" || cfg.Selector == "" || cfg.PrivateKeyFile == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(cfg.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("reporter.dkim.private_key_file: %w", err)
	}
	key, err := ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("reporter.dkim.private_key_file %s: %w", cfg.PrivateKeyFile, err)
	}
	return &Signer{domain: cfg.Domain, selector: cfg.Selector, key: key}, nil
}

// ParsePrivateKey reads an RSA (PKCS #1 or #8) or Ed25519 (PKCS #8) key
// in PEM.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not an RSA or Ed25519 private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// Sign returns msg with a DKIM-Signature field prepended.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	if s == nil {
		return msg, nil
	}
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain: s.domain, Selector: s.selector, Signer: s.key, Hash: crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders(),
	})
	if err != nil {
		return nil, fmt.Errorf("DKIM signing: %w", err)
	}
	return out.Bytes(), nil
}
