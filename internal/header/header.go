// Package header reads the header block of an Internet message (RFC 5322)
// in place: it cuts a message at its first empty line and walks the header
// fields as slices of the input, so that callers that rewrite messages keep
// every byte they do not touch and callers on hot paths do not allocate.
//
// Both LF and CRLF line endings are accepted, mixed too, and a message need
// not have an empty line (then it is all header). Nothing here fails or
// panics: input that is not a header simply ends the fields.
package header

import (
	"bytes"
	"strings"
)

// Cut splits msg at its first empty line (LF or CRLF). hdr runs up to and
// including the line break of the last header line; body starts after the
// empty line. found is false when there is no empty line: then hdr is all
// of msg and body is nil.
func Cut(msg []byte) (hdr, body []byte, found bool) {
	for i := 0; i < len(msg); {
		switch {
		case msg[i] == '\n':
			return msg[:i], msg[i+1:], true
		case msg[i] == '\r' && i+1 < len(msg) && msg[i+1] == '\n':
			return msg[:i], msg[i+2:], true
		}
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return msg, nil, false
}

// Field is one header field as it appears in the input.
type Field struct {
	Name  []byte // without the colon (and, in Obsolete syntax, white space before it)
	Value []byte // after the colon, folding and line breaks kept; see Unfold
	Raw   []byte // the whole field, including its final line break if any
}

// Syntax says which field names are accepted.
type Syntax uint8

const (
	// Strict accepts RFC 5322 field names only: printable ASCII but colon
	// and space, directly followed by the colon. Rewriters use it so that
	// a line they do not recognise as a field is left to the body.
	Strict Syntax = iota
	// Obsolete also accepts white space between the name and the colon
	// (RFC 5322 obs-optional), which broken reports and old mailers write.
	Obsolete
	// Lenient is Obsolete, and a line of only spaces and tabs ends the
	// fields as an empty line does, rather than continuing a field:
	// feedback generators that end their header that way are more common
	// than fields folded around an empty-looking line.
	Lenient
)

// Next reads the field that starts at b[pos:], with its continuation lines
// (lines that start with space or tab; in Lenient syntax not those of only
// white space). ok is false at the end of b, at an
// empty line and at a line that is not a field (a continuation with no
// field before it, or no valid name and colon); next is then pos.
func (s Syntax) Next(b []byte, pos int) (f Field, next int, ok bool) {
	if pos < 0 || pos >= len(b) {
		return Field{}, pos, false
	}
	line := b[pos:lineEnd(b, pos)]
	if line[0] == ' ' || line[0] == '\t' || line[0] == '\n' || line[0] == '\r' && len(line) > 1 && line[1] == '\n' {
		return Field{}, pos, false
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return Field{}, pos, false
	}
	name := line[:colon]
	if s != Strict {
		name = bytes.TrimRight(name, " \t")
	}
	if !validName(name) {
		return Field{}, pos, false
	}
	end := pos + len(line)
	for end < len(b) && (b[end] == ' ' || b[end] == '\t') {
		if s == Lenient && blank(b[end:lineEnd(b, end)]) {
			break
		}
		end = lineEnd(b, end)
	}
	return Field{Name: name, Value: b[pos+colon+1 : end], Raw: b[pos:end]}, end, true
}

// blank reports whether line holds nothing but spaces, tabs and its line
// break.
func blank(line []byte) bool {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
	return len(bytes.TrimLeft(line, " \t")) == 0
}

// lineEnd is the offset just after the line break of the line at pos, or
// len(b).
func lineEnd(b []byte, pos int) int {
	if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
		return pos + i + 1
	}
	return len(b)
}

func validName(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	for _, c := range n {
		if c <= ' ' || c >= 127 {
			return false
		}
	}
	return true
}

// Get returns the unfolded and trimmed value of the first field name (compared without
// regard to case) in the header block hdr, as cut by Cut. A line in hdr
// that is not a field is skipped, so that one stray line does not hide the
// fields after it.
func (s Syntax) Get(hdr []byte, name string) (string, bool) {
	for pos := 0; pos < len(hdr); {
		f, next, ok := s.Next(hdr, pos)
		if !ok {
			pos = lineEnd(hdr, pos)
			continue
		}
		if equalFold(f.Name, name) {
			// Trimming first is the same (a continuation line starts with
			// space or tab) and spares the copy for one-line values.
			return Unfold(bytes.TrimSpace(f.Value)), true
		}
		pos = next
	}
	return "", false
}

// Values returns the unfolded and trimmed values of every field name in hdr, in order,
// skipping lines that are not fields as Get does.
func (s Syntax) Values(hdr []byte, name string) []string {
	var vs []string
	for pos := 0; pos < len(hdr); {
		f, next, ok := s.Next(hdr, pos)
		if !ok {
			pos = lineEnd(hdr, pos)
			continue
		}
		if equalFold(f.Name, name) {
			vs = append(vs, Unfold(bytes.TrimSpace(f.Value)))
		}
		pos = next
	}
	return vs
}

// equalFold compares without converting b to a string, which would
// allocate.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Unfold removes the line breaks (CR LF or LF) of a raw field value (RFC
// 5322 section 2.2.3), keeping the white space that follows them. A CR that
// is not before LF is kept. Get and Values also trim white space; Unfold
// does not, for parsers to which leading space is significant.
func Unfold(v []byte) string {
	if bytes.IndexByte(v, '\n') < 0 {
		return string(v)
	}
	var b strings.Builder
	b.Grow(len(v))
	for len(v) > 0 {
		i := bytes.IndexByte(v, '\n')
		if i < 0 {
			b.Write(v)
			break
		}
		line := v[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		b.Write(line)
		v = v[i+1:]
	}
	return b.String()
}
