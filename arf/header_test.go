package arf

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// legacyParseHeader is parseHeader as it was before internal/header, kept
// to check that reports parse exactly as before (fields, rest, warnings).
func legacyParseHeader(data []byte, w *warnings) (Header, []byte) {
	var h Header
	pos := 0
	start, valStart, end := -1, 0, 0
	var name []byte
	full := false
	flush := func() {
		if start < 0 {
			return
		}
		start = -1
		if len(h) >= maxHeaderFields {
			if !full {
				w.add(WarnTruncated, "more than %d header fields; the rest ignored", maxHeaderFields)
				full = true
			}
			return
		}
		v := data[valStart:end]
		var val string
		if bytes.IndexByte(v, '\n') >= 0 {
			val = string(bytes.ReplaceAll(v, []byte{'\n'}, nil))
		} else {
			val = string(v)
		}
		h = append(h, Field{Name: string(name), Value: strings.TrimSpace(val)})
	}
	for pos < len(data) {
		line, next := nextLine(data, pos)
		if len(bytes.TrimRight(line, " \t")) == 0 {
			flush()
			return h, data[next:]
		}
		if isWSP(line[0]) {
			if start >= 0 {
				end = pos + len(line)
			} else {
				w.add(WarnHeaderSyntax, "continuation line with no field before it")
			}
			pos = next
			continue
		}
		colon := bytes.IndexByte(line, ':')
		var n []byte
		if colon > 0 {
			n = bytes.TrimRight(line[:colon], " \t")
		}
		if colon <= 0 || !validFieldName(n) {
			if pos == 0 && bytes.HasPrefix(line, []byte("From ")) {
				pos = next // mbox separator
				continue
			}
			flush()
			if len(h) > 0 {
				w.add(WarnHeaderSyntax, "header ends without a blank line at %q", truncateForText(line))
			}
			return h, data[pos:]
		}
		flush()
		start, name, valStart, end = pos, n, pos+colon+1, pos+len(line)
		pos = next
	}
	flush()
	return h, nil
}
func FuzzParseHeaderUnchanged(f *testing.F) {
	for _, s := range []string{
		"A: 1\n b\n\nbody", "Subject : x\nB: y\n\nz", "\n", " x\nA: b\n", "A:\n", "A: b\n \nC: d\n\nc",
		"From x\nA: b\n\n", "A: b\n\tc\n\n", "A\x80: b\n\n", "A: b\nnot a field\n", "A:b\n\t \n",
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(strings.Repeat("A: b\n c\n", maxHeaderFields+2) + " x\n\nbody"))
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.ReplaceAll(b, []byte{'\r'}, []byte{'\n'}) // parseHeader gets LF data
		var gw, ww warnings
		gh, gb := parseHeader(b, &gw)
		wh, wb := legacyParseHeader(b, &ww)
		if !slices.Equal(gh, wh) || !bytes.Equal(gb, wb) || (gb == nil) != (wb == nil) {
			t.Fatalf("parseHeader(%q) = %q, %q; want %q, %q", b, gh, gb, wh, wb)
		}
		if !slices.Equal(gw.list, ww.list) || gw.dropped != ww.dropped {
			t.Fatalf("warnings %v, want %v", gw.list, ww.list)
		}
	})
}
