package redact

import (
	"bufio"
	"bytes"
	"encoding/hex"
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
	// keep: byte strings the output must contain (evidence around a
	// redacted datum survives); absent: strings no rendering of the output
	// may contain in any case; absentHost: host names that no rendering
	// may contain as a host name (a longer or a parent domain may remain).
	keep, absent, absentHost []string
	localPart, wantErr       bool
	mode                     Mode
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
		case "keep":
			fx.keep = append(fx.keep, val)
		case "absent":
			fx.absent = append(fx.absent, val)
		case "absent-host":
			fx.absentHost = append(fx.absentHost, val)
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
	files, err := filepath.Glob("testdata/*.eml")
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
			for _, k := range fx.keep {
				if !bytes.Contains(out, []byte(k)) {
					t.Errorf("evidence lost: output does not contain %q", k)
				}
			}
			for _, a := range fx.absent {
				if slices.ContainsFunc(looseRenderings(out), func(r []byte) bool {
					return bytes.Contains(bytes.ToLower(r), []byte(strings.ToLower(a)))
				}) {
					t.Errorf("%q survived", a)
				}
			}
			for _, h := range fx.absentHost {
				if slices.ContainsFunc(looseRenderings(out), func(r []byte) bool {
					return hostIn(bytes.ToLower(r), strings.ToLower(h))
				}) {
					t.Errorf("host name %q (or a subdomain) survived", h)
				}
			}
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

// looseRenderings returns out and its renderings with QP escapes, soft line
// breaks, URL escapes and Q-encoded words' '_' undone, each up to twice.
func looseRenderings(out []byte) [][]byte {
	unQP := func(b []byte) []byte {
		b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("=\r\n"), nil), []byte("=\n"), nil)
		return looseUnescape(b, '=')
	}
	unURL := func(b []byte) []byte { return looseUnescape(b, '%') }
	rs := [][]byte{out}
	for _, f := range []func([]byte) []byte{unQP, unURL} {
		for _, g := range []func([]byte) []byte{unQP, unURL} {
			rs = append(rs, f(out), g(f(out)), g(g(f(out))))
		}
	}
	return rs
}

func looseUnescape(b []byte, esc byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == esc && i+2 < len(b) {
			var v [1]byte
			if _, err := hex.Decode(v[:], b[i+1:i+3]); err == nil {
				out = append(out, v[0])
				i += 2
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}

// hostIn reports whether lower-cased text holds host or a subdomain of it
// as a host name: not preceded by a label character, not followed by one
// or by a dot and a label character.
func hostIn(text []byte, host string) bool {
	label := func(c byte) bool { return isAlnum(c) || c == '-' }
	for off := 0; ; {
		i := bytes.Index(text[off:], []byte(host))
		if i < 0 {
			return false
		}
		s, e := off+i, off+i+len(host)
		off = s + 1
		if s > 0 && label(text[s-1]) {
			continue
		}
		if e < len(text) && (label(text[e]) || text[e] == '.' && e+1 < len(text) && label(text[e+1])) {
			continue
		}
		return true
	}
}
