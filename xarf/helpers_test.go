package xarf

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sharedDir is $XARFD_SHARED, default ../../shared (the shared checkout).
func sharedDir() string {
	if d := os.Getenv("XARFD_SHARED"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared")
}

func needDir(t testing.TB, dir, what string) {
	t.Helper()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skipf("%s not found at %s (set XARFD_SHARED to the shared directory): skipping", what, dir)
	}
}

func corpusDir() string { return filepath.Join(sharedDir(), "testdata", "arf") }
func schemaDir() string { return filepath.Join(sharedDir(), "xarf", "xarf-spec", "schemas", "v4") }
func samplesDir() string {
	return filepath.Join(sharedDir(), "xarf", "xarf-spec", "samples", "v4")
}

const fixtureDir = "testdata"

var (
	validatorOnce sync.Once
	validator     *Validator
	validatorErr  error
)

// schemaValidator compiles the schemas once per test binary.
func schemaValidator(t testing.TB) *Validator {
	t.Helper()
	needDir(t, schemaDir(), "XARF v4 schemas")
	validatorOnce.Do(func() { validator, validatorErr = NewValidator(schemaDir()) })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return validator
}

var (
	testReporter = Contact{Org: "Example Mailbox Provider", Contact: "fbl@provider.example", Domain: "provider.example"}
	testSender   = Contact{Org: "Example Net", Contact: "abuse@example.net", Domain: "example.net"}
	testReceived = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testID       = "7a1c52e4-5d0b-4f43-9a55-3f4e8f1d2c10"
)

func trustedNets(cidrs ...string) func(netip.Addr) bool {
	var ps []netip.Prefix
	for _, c := range cidrs {
		ps = append(ps, netip.MustParsePrefix(c))
	}
	return func(a netip.Addr) bool {
		for _, p := range ps {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}

// mustValid fails t unless doc passes the schema and the semantic checks.
func mustValid(t *testing.T, name string, doc []byte) {
	t.Helper()
	if err := schemaValidator(t).Check(doc); err != nil {
		t.Errorf("%s: emitted document is invalid:\n%v\n%s", name, err, doc)
	}
}

func marshal(t testing.TB, r *Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
