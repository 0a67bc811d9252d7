package redact

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime/quotedprintable"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// gen turns fuzzer bytes into choices; past the end every choice is 0, so
// short inputs still make small valid messages.
type gen struct {
	data []byte
	i    int
}

func (g *gen) n(k int) int {
	if g.i >= len(g.data) || k <= 1 {
		g.i++
		return 0
	}
	v := int(g.data[g.i]) % k
	g.i++
	return v
}

var fuzzAddrs = []string{"Trap.Box7@Example.net", "alice+news@mail.example.org", "x9q@t.example.com", "bob.o'neil@sub.example.co.uk"}

// spelling varies the case of the address; the redactor is given the
// spelling, as it would be by MessageRecipients or the envelope.
func (g *gen) spelling(a string) string {
	b := []byte(a)
	switch g.n(3) {
	case 1:
		return strings.ToLower(a)
	case 2:
		for i := range b {
			if g.n(2) == 1 {
				b[i] = bytes.ToUpper(b[i : i+1])[0]
			}
		}
	}
	return string(b)
}

func hexCase(g *gen, s string) string {
	if g.n(2) == 1 {
		return strings.ToUpper(s)
	}
	return s
}

// form renders the address in one of the forms the redactor must find.
func (g *gen) form(a string, inHeader bool) string {
	lower := strings.ToLower(a)
	src := a
	if g.n(2) == 1 {
		src = lower
	}
	junk := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(g.n(256))
		}
		return b
	}
	switch g.n(12) {
	case 1:
		return "https://u.example/x?e=" + strings.ReplaceAll(a, "@", hexCase(g, "%40"))
	case 2:
		var b strings.Builder
		for i := 0; i < len(a); i++ {
			b.WriteString(hexCase(g, fmt.Sprintf("%%%02x", a[i])))
		}
		return b.String()
	case 3, 4:
		enc := base64.StdEncoding
		if g.n(2) == 1 {
			enc = base64.URLEncoding
		}
		blob := slices.Concat(junk(g.n(3)+3*g.n(2)), []byte(src), junk(g.n(5)))
		s := enc.EncodeToString(blob)
		if g.n(2) == 1 {
			s = strings.TrimRight(s, "=")
		}
		return "<https://u.example/u/" + s + "/c>"
	case 5:
		return hexCase(g, hex.EncodeToString([]byte(src)))
	case 6:
		var d []byte
		switch g.n(3) {
		case 0:
			h := md5.Sum([]byte(src))
			d = h[:]
		case 1:
			h := sha1.Sum([]byte(src))
			d = h[:]
		default:
			h := sha256.Sum256([]byte(src))
			d = h[:]
		}
		return "h=" + hexCase(g, hex.EncodeToString(d))
	case 7:
		return strings.ReplaceAll(a, "@", "&#64;")
	case 8:
		if inHeader {
			return g.encodedWord("to " + a + " x")
		}
		return strings.ReplaceAll(a, "@", "=40")
	case 9:
		return "mailto:" + a + "?subject=unsub"
	}
	return a
}

var fuzzCharsets = []string{"utf-8", "iso-8859-1", "windows-1252", "us-ascii"}

func (g *gen) encodedWord(s string) string {
	cs := fuzzCharsets[g.n(len(fuzzCharsets))]
	cut := g.n(len(s) + 1)
	var words []string
	for _, p := range []string{s[:cut], s[cut:]} {
		if p == "" {
			continue
		}
		if g.n(2) == 0 {
			words = append(words, "=?"+cs+"?B?"+base64.StdEncoding.EncodeToString([]byte(p))+"?=")
			continue
		}
		var b strings.Builder
		for i := 0; i < len(p); i++ {
			c := p[i]
			if isAlnum(c) {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "=%02X", c)
			}
		}
		words = append(words, "=?"+cs+"?Q?"+b.String()+"?=")
	}
	return strings.Join(words, " ")
}

// text is some prose with the address planted zero or more times.
func (g *gen) text(a string) string {
	var b strings.Builder
	for i, n := 0, g.n(4); i <= n; i++ {
		b.WriteString([]string{"Hello ", "caf\u00e9 offer for ", "see ", "line\r\n", "x=1&y=2 ", strings.Repeat("lorem ipsum ", 8)}[g.n(6)])
		if g.n(3) > 0 {
			b.WriteString(g.form(a, false))
			b.WriteString(" ")
		}
	}
	return b.String() + "\r\n"
}

func wrapLines(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\r\n")
		s = s[n:]
	}
	return b.String() + s
}

// entity builds a random entity: headers with planted addresses, then a
// leaf in a random transfer encoding and charset, a multipart or a message.
func (g *gen) entity(a string, depth int) string {
	var h strings.Builder
	for i, n := 0, g.n(3); i < n; i++ {
		name := []string{"To", "Subject", "List-Unsubscribe", "X-Token", "Cc"}[g.n(5)]
		v := g.form(a, true)
		if g.n(3) == 0 {
			v = "x\r\n " + v // folded
		}
		h.WriteString(name + ": " + v + "\r\n")
	}
	kind := g.n(4)
	if depth >= 3 {
		kind = 0
	}
	switch kind {
	case 1: // multipart
		bnd := fmt.Sprintf("b%d-%d", depth, g.n(1000))
		sub := []string{"mixed", "alternative", "related"}[g.n(3)]
		h.WriteString("Content-Type: multipart/" + sub + "; boundary=\"" + bnd + "\"\r\n\r\n")
		if g.n(2) == 1 {
			h.WriteString("preamble " + g.form(a, false) + "\r\n")
		}
		for i, n := 0, 1+g.n(3); i < n; i++ {
			h.WriteString("--" + bnd + "\r\n" + g.entity(a, depth+1) + "\r\n")
		}
		h.WriteString("--" + bnd + "--\r\n")
		if g.n(2) == 1 {
			h.WriteString("epilogue " + g.form(a, false) + "\r\n")
		}
		return h.String()
	case 2: // message/rfc822
		h.WriteString("Content-Type: message/rfc822\r\n\r\n")
		return h.String() + g.entity(a, depth+1)
	}
	text := g.text(a)
	cs := fuzzCharsets[g.n(len(fuzzCharsets))]
	raw := []byte(text)
	if cs != "utf-8" {
		raw = []byte(strings.ReplaceAll(text, "\u00e9", "\xe9"))
	}
	switch g.n(4) {
	case 0:
		h.WriteString("Content-Type: text/plain; charset=" + cs + "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		h.Write(raw)
	case 1:
		h.WriteString("Content-Type: text/html; charset=" + cs + "\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
		var qb bytes.Buffer
		w := quotedprintable.NewWriter(&qb)
		w.Write(raw)
		w.Close()
		h.Write(qb.Bytes())
	case 2:
		if g.n(3) == 0 {
			cs, raw = "utf-16le", u16le(text)
		}
		h.WriteString("Content-Type: text/plain; charset=" + cs + "\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		h.WriteString(wrapLines(base64.StdEncoding.EncodeToString(raw), []int{76, 64, 60}[g.n(3)]) + "\r\n")
	default:
		h.WriteString("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		h.WriteString(wrapLines(base64.StdEncoding.EncodeToString(append([]byte{0, 0xff}, raw...)), 76) + "\r\n")
	}
	return h.String()
}

func u16le(s string) []byte {
	var b []byte
	for _, c := range utf16.Encode([]rune(s)) {
		b = append(b, byte(c), byte(c>>8))
	}
	return b
}

func FuzzApply(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte("multipart nested \x01\x01\x02\x01\x03\x04\x05\x06\x07\x08\x09\x0a"))
	f.Add(bytes.Repeat([]byte{1, 3, 2, 7}, 20))
	f.Add(bytes.Repeat([]byte{5, 1, 0, 2, 8, 4}, 30))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{data: data}
		a := fuzzAddrs[g.n(len(fuzzAddrs))]
		a = g.spelling(a)
		mode := ModeToken
		if g.n(2) == 1 {
			mode = ModeHMAC
		}
		p := Policy{Mode: mode, HMACKey: testKey}
		if g.n(2) == 1 {
			// The address's domain configured: the address is also found
			// as one at the domain, and the domain as a host name.
			p.Domains = []string{a[strings.LastIndexByte(a, '@')+1:]}
		}
		r := mustNew(t, p)
		hop := ""
		if len(p.Domains) > 0 {
			hop = "Received: from x by MX." + p.Domains[0] + " (x); Tue, 4 Mar 2025 10:00:00 +0000\r\n"
		}
		raw := []byte(hop + "From: sender@s.example\r\nMIME-Version: 1.0\r\n" + g.entity(a, 0))
		out, _, err := r.Apply(raw, []string{a})
		if err != nil {
			if !errors.Is(err, ErrUnredactable) {
				t.Fatalf("error does not wrap ErrUnredactable: %v", err)
			}
			t.Fatalf("generated message could not be redacted: %v\n%s", err, raw)
		}
		ft := &fakeTB{TB: t}
		assertNoLeak(ft, out, []string{a})
		if len(ft.failed) > 0 {
			t.Fatalf("%s\ninput:\n%s\noutput:\n%s", strings.Join(ft.failed, "\n"), raw, out)
		}
		for _, d := range p.Domains {
			if hostIn(bytes.ToLower(out), strings.ToLower(d)) {
				t.Fatalf("host name at the configured domain survived\ninput:\n%s\noutput:\n%s", raw, out)
			}
		}
		body := out[bytes.IndexByte(out, '\n')+1:]
		if in, got := partTree(t, raw), partTree(t, body); !slices.Equal(in, got) {
			t.Fatalf("part tree changed:\n in: %q\nout: %q\n%s", in, got, out)
		}

		// The same bytes as an arbitrary message: no panic, and whatever
		// comes back has the address in no literal form.
		out, _, err = r.Apply(data, []string{a})
		if err == nil && bytes.Contains(bytes.ToLower(out), []byte(strings.ToLower(a))) {
			t.Fatalf("literal survived in raw input %q", data)
		}
	})
}
