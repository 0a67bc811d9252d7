package redact

import (
	"bytes"
	"encoding/base64"
	"mime"
	"regexp"
	"strings"

	"github.com/xarfd/xarfd/internal/header"
)

// The MIME layer works on byte offsets into the original message rather than
// on a parsed and re-serialised tree: whatever it does not understand it
// leaves byte-for-byte in place, and delimiters, header order and folding of
// untouched fields survive exactly.

// maxDepth bounds nesting. Beyond it nothing can be decoded any more, so
// redaction could not be guaranteed and Apply fails instead.
const maxDepth = 48

type field struct {
	name       []byte
	start, end int // whole field, including the line break(s)
	val        int // offset of the value (after the colon)
}

// parseHeader splits an entity into header fields and body. It never fails:
// a line that is neither a field nor a continuation starts the body. Field
// names are Strict: a line such as "Subject : x" is left to the body, where
// it is scanned as text, rather than re-treated as a field.
func parseHeader(b []byte) (fields []field, hdrEnd, bodyStart int) {
	pos := 0
	for {
		f, next, ok := header.Strict.Next(b, pos)
		if !ok {
			break
		}
		fields = append(fields, field{name: f.Name, start: pos, end: next, val: next - len(f.Value)})
		pos = next
	}
	switch rest := b[pos:]; {
	case len(rest) > 0 && rest[0] == '\n':
		return fields, pos, pos + 1
	case len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n':
		return fields, pos, pos + 2
	}
	return fields, pos, pos
}

func headerValue(b []byte, fields []field, name string) string {
	for _, f := range fields {
		if strings.EqualFold(string(f.name), name) {
			return strings.TrimSpace(header.Unfold(b[f.val:f.end]))
		}
	}
	return ""
}

var charsetRe = regexp.MustCompile(`(?i)charset\s*=\s*(?:"([^"]*)"|([^\s;]+))`)

var boundaryRe = regexp.MustCompile(`(?i)boundary\s*=\s*(?:"([^"]*)"|([^\s;]+))`)

// contentType parses leniently: a malformed parameter list must not hide a
// multipart body from redaction.
func contentType(v string) (mediaType, boundary, cs string) {
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return strings.ToLower(mt), params["boundary"], params["charset"]
	}
	mt, _, _ = strings.Cut(v, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if m := boundaryRe.FindStringSubmatch(v); m != nil {
		boundary = m[1] + m[2]
	}
	if m := charsetRe.FindStringSubmatch(v); m != nil {
		cs = m[1] + m[2]
	}
	return mt, boundary, cs
}

// kind is how a body is walked.
type kind int

const (
	kindText      kind = iota // scanned as text
	kindMultipart             // split at its boundary
	kindMessage               // a whole message (or a header block) inside
)

func classify(mediaType, boundary string) kind {
	switch {
	case strings.HasPrefix(mediaType, "multipart/") && boundary != "":
		return kindMultipart
	case mediaType == "message/rfc822", mediaType == "message/global",
		mediaType == "text/rfc822-headers", mediaType == "message/rfc822-headers",
		mediaType == "message/global-headers",
		mediaType == "message/feedback-report",
		mediaType == "message/delivery-status", mediaType == "message/global-delivery-status",
		mediaType == "message/disposition-notification":
		// Header-shaped bodies parse as an entity with no body; their
		// fields get the header treatment (unfolding, encoded words).
		return kindMessage
	}
	return kindText
}

// segment of a multipart body: either a delimiter line (kept verbatim) or
// content (preamble, a part, the epilogue).
type segment struct {
	start, end int
	delim      bool
	part       bool // content between two delimiters (an entity)
}

// splitMultipart cuts a multipart body at its delimiters. ok is false when
// no delimiter is found at all, so the caller treats the body as text.
func splitMultipart(b []byte, boundary string) (segs []segment, ok bool) {
	delim := []byte("--" + boundary)
	contentStart := 0
	inPart := false
	closed := false
	for pos := 0; pos < len(b) && !closed; {
		eol := bytes.IndexByte(b[pos:], '\n')
		next := len(b)
		if eol >= 0 {
			next = pos + eol + 1
		}
		line := b[pos:next]
		if isDelim(line, delim) {
			ok = true
			// The line break before a delimiter belongs to the delimiter.
			dstart := pos
			if dstart > contentStart && b[dstart-1] == '\n' {
				dstart--
				if dstart > contentStart && b[dstart-1] == '\r' {
					dstart--
				}
			}
			segs = append(segs, segment{start: contentStart, end: dstart, part: inPart})
			segs = append(segs, segment{start: dstart, end: next, delim: true})
			closed = bytes.HasPrefix(line[len(delim):], []byte("--"))
			contentStart, inPart = next, true
		}
		pos = next
	}
	if !ok {
		return nil, false
	}
	segs = append(segs, segment{start: contentStart, end: len(b), part: inPart && !closed})
	return segs, true
}

func isDelim(line, delim []byte) bool {
	if !bytes.HasPrefix(line, delim) {
		return false
	}
	rest := line[len(delim):]
	rest = bytes.TrimPrefix(rest, []byte("--"))
	return len(bytes.TrimRight(rest, " \t\r\n")) == 0
}

// b64Layout records how a base64 body was written, so that a redacted body
// is re-encoded the same way.
type b64Layout struct {
	lineLen  int // 0: one line
	eol      string
	finalEOL bool
}

// decodeB64Body decodes strictly (apart from line breaks). When it fails the
// caller falls back to scanning the raw text and the verifier decodes
// leniently, so bad base64 cannot hide an address.
func decodeB64Body(body []byte) ([]byte, b64Layout, bool) {
	var lay b64Layout
	lay.eol = "\n"
	if bytes.Contains(body, []byte("\r\n")) {
		lay.eol = "\r\n"
	}
	trimmed := bytes.TrimRight(body, " \t\r\n")
	lay.finalEOL = len(trimmed) < len(body)
	// The lines of trimmed, walked without building a list of them.
	chars := make([]byte, 0, len(trimmed))
	nlines, irregular := 0, false
	for rest := trimmed; ; nlines++ {
		l := rest
		i := bytes.IndexByte(rest, '\n')
		if i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		}
		l = bytes.TrimRight(l, "\r")
		if nlines == 0 {
			lay.lineLen = len(l)
		} else if i >= 0 && len(l) != lay.lineLen {
			irregular = true // a line other than the last differs
		}
		chars = append(chars, l...)
		if i < 0 {
			nlines++
			break
		}
	}
	if nlines == 1 {
		lay.lineLen = 0
	} else if irregular || lay.lineLen%4 != 0 || lay.lineLen == 0 {
		// Irregular wrapping cannot be reproduced; use the usual 76.
		lay.lineLen = 76
	}
	enc := base64.StdEncoding
	if len(chars)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	dec := make([]byte, enc.DecodedLen(len(chars)))
	n, err := enc.Decode(dec, chars)
	if err != nil {
		return nil, lay, false
	}
	return dec[:n], lay, true
}

func encodeB64Body(data []byte, lay b64Layout) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	if lay.lineLen == 0 {
		if lay.finalEOL {
			return []byte(enc + lay.eol)
		}
		return []byte(enc)
	}
	var out bytes.Buffer
	for len(enc) > 0 {
		n := min(lay.lineLen, len(enc))
		out.WriteString(enc[:n])
		enc = enc[n:]
		if len(enc) > 0 || lay.finalEOL {
			out.WriteString(lay.eol)
		}
	}
	return out.Bytes()
}

// lenientB64 decodes whatever base64 there is, skipping every byte outside
// the alphabet: used only to look for what strict decoding could not see.
func lenientB64(body []byte) []byte {
	chars := make([]byte, 0, len(body))
	for _, c := range body {
		if isAlnum(c) || c == '+' || c == '/' {
			chars = append(chars, c)
		}
	}
	if len(chars)%4 == 1 {
		chars = chars[:len(chars)-1]
	}
	dec := make([]byte, base64.RawStdEncoding.DecodedLen(len(chars)))
	n, _ := base64.RawStdEncoding.Decode(dec, chars)
	return dec[:n]
}

// qpDecode decodes quoted-printable leniently: a malformed escape is kept as
// it is, as RFC 2045 recommends.
func qpDecode(b []byte) []byte {
	var v view
	v.reset(len(b), false)
	stageQP(&v, b, false)
	return v.b
}

// qpEncode writes quoted-printable for bodies that had to be decoded as a
// whole (a message or multipart illegally sent as quoted-printable).
func qpEncode(data []byte, eol string) []byte {
	var out bytes.Buffer
	lineLen := 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '\n' || (c == '\r' && i+1 < len(data) && data[i+1] == '\n') {
			if c == '\r' {
				i++
			}
			out.WriteString(eol)
			lineLen = 0
			continue
		}
		var enc []byte
		if (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && i+1 < len(data) && data[i+1] != '\r' && data[i+1] != '\n') {
			enc = []byte{c}
		} else {
			enc = []byte{'=', upperHex[c>>4], upperHex[c&15]}
		}
		if lineLen+len(enc) > 75 {
			out.WriteString("=" + eol)
			lineLen = 0
		}
		out.Write(enc)
		lineLen += len(enc)
	}
	return out.Bytes()
}

// rewrapQP inserts soft line breaks into lines a replacement made longer
// than RFC 2045 allows, never inside an =XX escape.
func rewrapQP(b []byte) []byte {
	eol := "\n"
	if bytes.Contains(b, []byte("\r\n")) {
		eol = "\r\n"
	}
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/32) // room for the soft breaks of long lines
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line, rest := b, []byte(nil)
		if i >= 0 {
			line, rest = b[:i+1], b[i+1:]
		}
		content := bytes.TrimRight(line, "\r\n")
		ending := line[len(content):]
		for len(content) > 76 {
			cut := 75
			if content[cut-1] == '=' {
				cut--
			} else if content[cut-2] == '=' {
				cut -= 2
			}
			out.Write(content[:cut])
			out.WriteString("=" + eol)
			content = content[cut:]
		}
		out.Write(content)
		out.Write(ending)
		b = rest
	}
	return out.Bytes()
}

func maxLineLen(b []byte) int {
	m := 0
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			i = len(b)
		}
		m = max(m, len(bytes.TrimRight(b[:i], "\r")))
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return m
}

// eolOf is the line ending a message uses; CRLF, as on the wire, when it
// has none.
func eolOf(b []byte) string {
	i := bytes.IndexByte(b, '\n')
	if i < 0 || (i > 0 && b[i-1] == '\r') {
		return "\r\n"
	}
	return "\n"
}
