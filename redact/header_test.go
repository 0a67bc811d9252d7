package redact

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/internal/header"
)

// legacyParseHeader is parseHeader as it was before internal/header: the
// byte offsets it gives decide what redaction leaves in place, so they
// must not change.
func legacyParseHeader(b []byte) (fields []field, hdrEnd, bodyStart int) {
	pos := 0
	for pos < len(b) {
		eol := bytes.IndexByte(b[pos:], '\n')
		next := len(b)
		if eol >= 0 {
			next = pos + eol + 1
		}
		line := b[pos:next]
		if string(line) == "\n" || string(line) == "\r\n" {
			return fields, pos, next
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) > 0 {
				fields[len(fields)-1].end = next
				pos = next
				continue
			}
			return fields, pos, pos
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !legacyValidName(line[:colon]) {
			return fields, pos, pos
		}
		fields = append(fields, field{name: line[:colon], start: pos, end: next, val: pos + colon + 1})
		pos = next
	}
	return fields, pos, pos
}

func legacyValidName(n []byte) bool {
	for _, c := range n {
		if c <= ' ' || c >= 127 {
			return false
		}
	}
	return true
}

func legacyUnfold(v []byte) string {
	return strings.ReplaceAll(strings.ReplaceAll(string(v), "\r\n", ""), "\n", "")
}

func FuzzParseHeaderUnchanged(f *testing.F) {
	for _, s := range []string{
		"A: 1\r\n b\r\n\r\nbody", "Subject : x\nB: y\n\nz", "\n", " x\n", "A:\n", "A: b\n \n\nc",
		"From x\nA: b\r\n\n", "A: b\r\n\r", "A: b\n\tc\n\r\n", "A\x80: b\n\n", "A: \xc2\r\n\xa0x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gh, gb := parseHeader(b)
		want, wh, wb := legacyParseHeader(b)
		eq := func(x, y field) bool {
			return bytes.Equal(x.name, y.name) && x.start == y.start && x.end == y.end && x.val == y.val
		}
		if !slices.EqualFunc(got, want, eq) || gh != wh || gb != wb {
			t.Fatalf("parseHeader(%q) = %v %d %d, want %v %d %d", b, got, gh, gb, want, wh, wb)
		}
		for _, fl := range got {
			v := b[fl.val:fl.end]
			if g, w := header.Unfold(v), legacyUnfold(v); g != w {
				t.Fatalf("Unfold(%q) = %q, want %q", v, g, w)
			}
			first := want[slices.IndexFunc(want, func(x field) bool { return bytes.EqualFold(x.name, fl.name) })]
			if g, w := headerValue(b, got, string(fl.name)), strings.TrimSpace(legacyUnfold(b[first.val:first.end])); g != w {
				t.Fatalf("headerValue(%q) = %q, want %q", fl.name, g, w)
			}
		}
	})
}
