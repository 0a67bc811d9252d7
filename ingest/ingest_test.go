package ingest

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

func setup(t *testing.T, extra string) (*config.Config, *store.Store, *Ingester) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	cfg, err := config.Parse([]byte(`
hostname: mx.test.example
sender: {org: T, contact: abuse@test.example, domain: test.example}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@test.example"]}
  - {name: trap, kind: trap, addresses: ["*@trap.test.example"], redact: {recipients: true}}
  - {name: hmac, kind: trap, addresses: ["*@h.test.example"], redact: {recipients: true, mode: hmac, hmac_key_file: `+key+`}}
`+extra), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := New(cfg, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, st, in
}

func env() store.Envelope {
	return store.Envelope{PeerIP: netip.MustParseAddr("192.0.2.1"), PeerPort: 25, MailFrom: "s@origin.example", Via: "smtp"}
}

func TestRedactingChannelNeverStoresTheAddress(t *testing.T) {
	cfg, st, in := setup(t, "")
	raw := []byte("To: Trap.One@trap.test.example\r\nList-Unsubscribe: <https://x.example/u?e=trap.one%40trap.test.example>\r\nSubject: s\r\n\r\nHi trap.one@trap.test.example\r\n")
	res, err := in.Accept(env(), []Delivery{
		{Channel: cfg.Channel("trap"), Rcpts: []string{"trap.one@trap.test.example"}},
		{Channel: cfg.Channel("fbl"), Rcpts: []string{"fbl@test.example"}},
	}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Redaction.Total() < 3 || res[1].Redaction.Total() != 0 {
		t.Fatalf("results = %+v", res)
	}
	trapRaw, _ := st.Raw(res[0].ID)
	if bytes.Contains(bytes.ToLower(trapRaw), []byte("trap.one")) {
		t.Errorf("address stored: %q", trapRaw)
	}
	m, _ := st.Message(res[0].ID)
	if m.Envelope.Rcpts[0] != "redacted@redacted.invalid" || m.Size != len(trapRaw) {
		t.Errorf("record = %+v", m)
	}
	// The other channel gets the message untouched.
	fblRaw, _ := st.Raw(res[1].ID)
	if !bytes.Equal(fblRaw, raw) {
		t.Errorf("fbl raw = %q", fblRaw)
	}
	// raw itself is not modified.
	if !bytes.Contains(raw, []byte("Trap.One@")) {
		t.Error("Accept modified its input")
	}
}

func TestHMACPseudonymsAreStable(t *testing.T) {
	cfg, st, in := setup(t, "")
	var seen []string
	for _, rcpt := range []string{"a@h.test.example", "A@H.test.example", "b@h.test.example"} {
		res, err := in.Accept(env(), []Delivery{{Channel: cfg.Channel("hmac"), Rcpts: []string{rcpt}}}, []byte("Subject: x\r\n\r\nto "+rcpt+"\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := st.Message(res[0].ID)
		p := m.Envelope.Rcpts[0]
		if !strings.HasPrefix(p, "r-") || !strings.HasSuffix(p, "@redacted.invalid") {
			t.Fatalf("pseudonym %q", p)
		}
		raw, _ := st.Raw(res[0].ID)
		if !bytes.Contains(raw, []byte(p)) {
			t.Errorf("body does not carry the same pseudonym %q: %q", p, raw)
		}
		seen = append(seen, p)
	}
	if seen[0] != seen[1] || seen[0] == seen[2] {
		t.Errorf("pseudonyms %v: same address must map alike, different ones apart", seen)
	}
}

func TestUnredactableIsQuarantinedWithoutBody(t *testing.T) {
	cfg, st, in := setup(t, "")
	// The address is part of a MIME boundary, which cannot be rewritten
	// without breaking the message.
	raw := []byte("To: x@trap.test.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x@trap.test.example\"\r\n\r\n--x@trap.test.example\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x@trap.test.example--\r\n")
	res, err := in.Accept(env(), []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"x@trap.test.example"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Quarantined || strings.Contains(res[0].Reason, "x@trap") {
		t.Fatalf("result = %+v", res[0])
	}
	m, _ := st.Message(res[0].ID)
	if m.Status != store.StatusQuarantined || !m.Withheld || m.Envelope.Rcpts[0] != "redacted@redacted.invalid" {
		t.Errorf("record = %+v", m)
	}
	if _, err := st.Raw(res[0].ID); err != store.ErrNotFound {
		t.Errorf("body stored: %v", err)
	}
	if q, _ := st.QuarantineEntries(); len(q) != 1 || q[0].Key != m.ID.String() {
		t.Errorf("quarantine = %+v", q)
	}
	if n, _ := st.Recover(); n != 0 {
		t.Errorf("a withheld body is not an unreadable record, Recover moved %d", n)
	}
}

func TestNoDelivery(t *testing.T) {
	_, _, in := setup(t, "")
	if _, err := in.Accept(env(), nil, []byte("x")); err != ErrNoDelivery {
		t.Errorf("got %v", err)
	}
}
