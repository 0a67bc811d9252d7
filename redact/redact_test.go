package redact

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message"
)

var testKey = []byte("0123456789abcdef-test-key")

type fixture struct {
	rcpt, addresses, domains, check []string
	localPart, wantErr              bool
	mode                            Mode
}

func readFixture(t *testing.T, path string) fixture {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fx fixture
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch key {
		case "rcpt":
			fx.rcpt = append(fx.rcpt, val)
		case "address":
			fx.addresses = append(fx.addresses, val)
		case "domain":
			fx.domains = append(fx.domains, val)
		case "check":
			fx.check = append(fx.check, val)
		case "localpart":
			fx.localPart = true
		case "mode":
			if fx.mode, err = ParseMode(val); err != nil {
				t.Fatal(err)
			}
		case "error":
			fx.wantErr = true
		case "":
		default:
			t.Fatalf("%s: unknown key %q", path, key)
		}
	}
	return fx
}

func mustNew(t testing.TB, p Policy) *Redactor {
	t.Helper()
	if p.Hostname == "" {
		p.Hostname = "mx.test.example"
	}
	r, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// partTree describes a message's structure as go-message sees it.
func partTree(t testing.TB, raw []byte) []string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		t.Fatalf("output does not parse: %v", err)
	}
	var tree []string
	var walkEntity func(e *message.Entity, prefix string, depth int)
	walkEntity = func(e *message.Entity, prefix string, depth int) {
		_ = e.Walk(func(path []int, part *message.Entity, err error) error {
			mt, params, _ := part.Header.ContentType()
			node := prefix + joinPath(path) + " " + mt + " cte=" + part.Header.Get("Content-Transfer-Encoding") + " boundary=" + params["boundary"]
			tree = append(tree, node)
			if (mt == "message/rfc822" || mt == "message/global") && depth < 10 && part.Body != nil {
				b, _ := io.ReadAll(part.Body)
				if inner, _ := message.Read(bytes.NewReader(b)); inner != nil {
					walkEntity(inner, node+" > ", depth+1)
				}
			}
			return nil
		})
	}
	walkEntity(e, "", 0)
	return tree
}

func joinPath(p []int) string {
	var b strings.Builder
	for _, i := range p {
		b.WriteString("/")
		b.WriteString(string(rune('0' + i%10)))
	}
	return b.String()
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("../testdata/redact/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			fx := readFixture(t, strings.TrimSuffix(file, ".eml")+".addrs")
			r := mustNew(t, Policy{Mode: fx.mode, HMACKey: testKey, Addresses: fx.addresses, Domains: fx.domains, LocalPart: fx.localPart})
			addrs := append(slices.Clone(fx.rcpt), MessageRecipients(raw)...)
			out, sum, err := r.Apply(raw, addrs)
			checked := slices.Concat(addrs, fx.addresses, fx.check)
			if fx.wantErr {
				if !errors.Is(err, ErrUnredactable) {
					t.Fatalf("want ErrUnredactable, got %v", err)
				}
				if out != nil {
					t.Fatal("output returned with an error")
				}
				for _, a := range checked {
					if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(a)) {
						t.Fatalf("error text contains an address: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			assertNoLeak(t, out, checked)
			if !bytes.HasPrefix(out, []byte(HeaderName+": mx.test.example; mode="+fx.mode.String()+"; forms="+sum.String())) {
				t.Errorf("output does not start with the redaction header: %q", out[:min(len(out), 120)])
			}
			// Same structure, as go-message sees it.
			body := out[bytes.IndexByte(out, '\n')+1:]
			if in, got := partTree(t, raw), partTree(t, body); !slices.Equal(in, got) {
				t.Errorf("part tree changed:\n in: %q\nout: %q", in, got)
			}
			if sum.Total() == 0 && !bytes.Equal(body, raw) {
				t.Errorf("nothing found but the message changed")
			}
			if name != "18-nothing" && sum.Total() == 0 {
				t.Errorf("nothing redacted")
			}
		})
	}
}
