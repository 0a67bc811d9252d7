// Package leakcheck finds recipient addresses in data that must not carry
// them (redacted messages, the database file, logs, API responses), in
// every form xarfd promises to redact: literal in any case, URL- and
// QP-escaped, base64 and base64url at every alignment, hex, and md5/sha1/
// sha256 digests, in the raw bytes and in every header and body part
// go-message can decode.
//
// It is written apart from the redact package's own search: it derives
// every form from the address with the standard library and searches with
// plain substring search, so a blind spot of the redactor is not shared by
// its tests. It is test support; nothing in the daemon imports it.
package leakcheck

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
)

type leakForm struct {
	name   string
	needle string
	fold   bool // case-insensitive
}

func b64Inner(addr []byte, align int, enc *base64.Encoding) string {
	blob := append(bytes.Repeat([]byte{0xA5}, align), addr...)
	e := enc.EncodeToString(blob)
	first := (8*align + 5) / 6
	last := 8 * (align + len(addr)) / 6
	return e[first:last]
}

func fullPercent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// leakForms lists every encoding of addr the checker looks for.
func leakForms(addr string) []leakForm {
	lower := strings.ToLower(addr)
	var fs []leakForm
	add := func(name, n string, fold bool) { fs = append(fs, leakForm{name, n, fold}) }
	add("literal", lower, true)
	add("url-%40", strings.ReplaceAll(lower, "@", "%40"), true)
	add("url-query", url.QueryEscape(lower), true)
	add("url-full", fullPercent(lower), true)
	add("qp-=40", strings.ReplaceAll(lower, "@", "=40"), true)
	add("entity", strings.ReplaceAll(lower, "@", "&#64;"), true)
	for _, sp := range uniq(lower, addr) {
		b := []byte(sp)
		add("hex", hex.EncodeToString(b), true)
		m, s1, s2 := md5.Sum(b), sha1.Sum(b), sha256.Sum256(b)
		add("md5", hex.EncodeToString(m[:]), true)
		add("sha1", hex.EncodeToString(s1[:]), true)
		add("sha256", hex.EncodeToString(s2[:]), true)
		for align := 0; align < 3; align++ {
			add(fmt.Sprintf("base64@%d", align), b64Inner(b, align, base64.StdEncoding), false)
			add(fmt.Sprintf("base64url@%d", align), b64Inner(b, align, base64.URLEncoding), false)
		}
	}
	return fs
}

func uniq(lower, asWritten string) []string {
	if lower == asWritten {
		return []string{lower}
	}
	return []string{lower, asWritten}
}

// searchLeak reports the first form of addr present in text.
func searchLeak(text []byte, addr string) (string, bool) {
	lt := bytes.ToLower(text)
	for _, f := range leakForms(addr) {
		if f.fold {
			if bytes.Contains(lt, []byte(strings.ToLower(f.needle))) {
				return f.name, true
			}
		} else if bytes.Contains(text, []byte(f.needle)) {
			return f.name, true
		}
	}
	return "", false
}

// qpDecodeLoose removes soft line breaks and =XX escapes without failing.
func qpDecodeLoose(b []byte) []byte {
	s := strings.NewReplacer("=\r\n", "", "=\n", "").Replace(string(b))
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '=' && i+2 < len(s) {
			if v, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				out = append(out, v[0])
				i += 2
				continue
			}
		}
		out = append(out, s[i])
	}
	return out
}

// urlDecodeLoose decodes %XX escapes, leaving invalid ones alone.
func urlDecodeLoose(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == '%' && i+2 < len(b) {
			if v, err := hex.DecodeString(string(b[i+1 : i+3])); err == nil {
				out = append(out, v[0])
				i += 2
				continue
			}
		}
		out = append(out, b[i])
	}
	return out
}

// Check fails tb if any form of any of addrs is in out, raw or after
// decoding: the whole output, its QP- and URL-decoded renderings, and every
// header (encoded words decoded) and every part body decoded by go-message,
// recursing into message/rfc822 parts.
func Check(tb testing.TB, out []byte, addrs []string) {
	tb.Helper()
	for _, l := range Find(out, addrs) {
		tb.Errorf("leak: %s", l)
	}
}

// Find returns one description per leak of any of addrs in out (which
// form, of which address, where); none when out is clean.
func Find(out []byte, addrs []string) []string {
	texts := map[string][]byte{
		"raw":                out,
		"qp-decoded raw":     qpDecodeLoose(out),
		"url-decoded raw":    urlDecodeLoose(out),
		"qp+url-decoded raw": urlDecodeLoose(qpDecodeLoose(out)),
		"utf16le-narrowed":   narrowUTF16(out, 0),
		"utf16be-narrowed":   narrowUTF16(out, 1),
	}
	decodedTexts(out, "message", texts, 0)
	var leaks []string
	for _, a := range addrs {
		for where, t := range texts {
			if form, ok := searchLeak(t, a); ok {
				leaks = append(leaks, fmt.Sprintf("%s form of %q in %s", form, a, where))
			}
		}
	}
	return leaks
}

// narrowUTF16 keeps every other byte, turning ASCII UTF-16 into ASCII.
func narrowUTF16(b []byte, off int) []byte {
	var out []byte
	for i := off; i < len(b); i += 2 {
		out = append(out, b[i])
	}
	return out
}

func decodedTexts(raw []byte, where string, texts map[string][]byte, depth int) {
	if depth > 20 {
		return
	}
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		return
	}
	_ = err // unknown charset or encoding still gives an entity
	_ = e.Walk(func(path []int, part *message.Entity, err error) error {
		name := fmt.Sprintf("%s part %v", where, path)
		var hb bytes.Buffer
		fields := part.Header.Fields()
		for fields.Next() {
			v, err := fields.Text()
			if err != nil {
				v = fields.Value()
			}
			hb.WriteString(fields.Key() + ": " + v + "\n")
		}
		texts[name+" headers"] = hb.Bytes()
		if err != nil || part.Body == nil {
			return nil
		}
		mt, _, _ := part.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		body, _ := io.ReadAll(part.Body)
		texts[name+" body"] = body
		texts[name+" body url-decoded"] = urlDecodeLoose(body)
		if dec, err := (&mime.WordDecoder{CharsetReader: charset.Reader}).DecodeHeader(string(body)); err == nil {
			texts[name+" body words"] = []byte(dec)
		}
		switch mt {
		case "message/rfc822", "message/global":
			decodedTexts(body, name, texts, depth+1)
		}
		return nil
	})
}
