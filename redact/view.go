package redact

import "bytes"

// A view is a decoded rendering of a text in which every byte remembers the
// source bytes it came from, so that a needle found in the decoded text can be
// replaced in the source without decoding and re-encoding the rest of it. This
// keeps quoted-printable bodies, URLs and headers byte-identical outside the
// occurrences that are replaced.
type view struct {
	b          []byte
	start, end []int32 // source span of b[i] is [start[i], end[i])
}

func (v *view) add(c byte, s, e int) {
	v.b = append(v.b, c)
	v.start = append(v.start, int32(s))
	v.end = append(v.end, int32(e))
}

// span returns the source span of the view bytes [i, j).
func (v *view) span(i, j int) (int, int) {
	return int(v.start[i]), int(v.end[j-1])
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// needsView reports whether normalising src can change it at all; most header
// fields and many bodies skip the second scan.
func needsView(src []byte, hdr bool) bool {
	for _, c := range src {
		switch c {
		case '%', '=', '&':
			return true
		case '\n':
			if hdr {
				return true
			}
		}
	}
	return false
}

// views renders src with the transport escapes an address commonly hides
// behind undone: quoted-printable (=XX, soft line breaks) and header folding,
// then URL percent-encoding and HTML character references, each also a
// second time (QP of QP, %2540). Every rendering is returned and searched,
// not only the last: decoding once more can destroy what one decoding
// revealed (a digest "=807b..." after a soft line break is not QP).
// Renderings that change nothing are left out; the raw text is not included.
func views(src []byte, hdr bool) []*view {
	var out []*view
	addURL := func(v *view) {
		for round := 0; round < maxRounds; round++ {
			if bytes.IndexByte(v.b, '%') < 0 && bytes.IndexByte(v.b, '&') < 0 {
				return
			}
			next := stageURL(v.b)
			if len(next.b) == len(v.b) {
				return
			}
			if v != nil && v.start != nil {
				next = compose(v, next)
			}
			out = append(out, next)
			v = next
		}
	}
	if bytes.IndexByte(src, '=') < 0 && (!hdr || bytes.IndexByte(src, '\n') < 0) {
		// Nothing for the first stage: URL-decode the source directly,
		// its spans are already source offsets.
		addURL(&view{b: src})
		return out
	}
	q1 := stageQP(src, hdr)
	if len(q1.b) != len(src) {
		out = append(out, q1)
	}
	addURL(q1)
	if bytes.IndexByte(q1.b, '=') >= 0 {
		if q2 := stageQP(q1.b, false); len(q2.b) != len(q1.b) {
			q2 = compose(q1, q2)
			out = append(out, q2)
			addURL(q2)
		}
	}
	return out
}

const maxRounds = 2

// compose maps the spans of b (indices into a.b) to a's sources; b is
// fresh from a stage, so it is rewritten in place.
func compose(a, b *view) *view {
	for i := range b.b {
		s, e := int(b.start[i]), int(b.end[i])
		b.start[i] = a.start[s]
		b.end[i] = a.end[e-1]
	}
	return b
}

func stageQP(src []byte, hdr bool) *view {
	v := &view{b: make([]byte, 0, len(src)), start: make([]int32, 0, len(src)), end: make([]int32, 0, len(src))}
	for i := 0; i < len(src); {
		c := src[i]
		if c == '=' {
			if i+2 < len(src) {
				if h, ok := unhex(src[i+1]); ok {
					if l, ok := unhex(src[i+2]); ok {
						v.add(h<<4|l, i, i+3)
						i += 3
						continue
					}
				}
			}
			// Soft line break, allowing transport padding before the EOL.
			j := i + 1
			for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
				j++
			}
			if j < len(src) && src[j] == '\r' {
				j++
			}
			if j < len(src) && src[j] == '\n' {
				i = j + 1
				continue
			}
		}
		if hdr && (c == '\r' || c == '\n') {
			// A fold: drop the line break and the whitespace after it, so
			// that a token broken by a careless folder is whole again.
			j := i
			if src[j] == '\r' {
				j++
			}
			if j < len(src) && src[j] == '\n' {
				j++
				k := j
				for k < len(src) && (src[k] == ' ' || src[k] == '\t') {
					k++
				}
				if k > j {
					i = k
					continue
				}
			}
		}
		v.add(c, i, i+1)
		i++
	}
	return v
}

func stageURL(src []byte) *view {
	v := &view{b: make([]byte, 0, len(src)), start: make([]int32, 0, len(src)), end: make([]int32, 0, len(src))}
	for i := 0; i < len(src); {
		c := src[i]
		switch c {
		case '%':
			if i+2 < len(src) {
				if h, ok := unhex(src[i+1]); ok {
					if l, ok := unhex(src[i+2]); ok {
						v.add(h<<4|l, i, i+3)
						i += 3
						continue
					}
				}
			}
		case '&':
			if d, n := entity(src[i:]); n > 0 {
				v.add(d, i, i+n)
				i += n
				continue
			}
		}
		v.add(c, i, i+1)
		i++
	}
	return v
}

// entity decodes an HTML character reference to an ASCII byte: &#64; &#x40;
// &commat; &period;. Only ASCII matters: addresses are searched as ASCII.
func entity(b []byte) (byte, int) {
	if len(b) < 3 {
		return 0, 0
	}
	if b[1] != '#' {
		for _, e := range [...]struct {
			name string
			c    byte
		}{{"&commat;", '@'}, {"&period;", '.'}, {"&amp;", '&'}, {"&plus;", '+'}, {"&sol;", '/'}, {"&equals;", '='}} {
			if len(b) >= len(e.name) && string(foldBytes(b[:len(e.name)])) == e.name {
				return e.c, len(e.name)
			}
		}
		return 0, 0
	}
	i, val, hex := 2, 0, false
	if i < len(b) && (b[i] == 'x' || b[i] == 'X') {
		hex = true
		i++
	}
	digits := 0
	for ; i < len(b) && digits < 8; i++ {
		c := b[i]
		if hex {
			d, ok := unhex(c)
			if !ok {
				break
			}
			val = val*16 + int(d)
		} else {
			if c < '0' || c > '9' {
				break
			}
			val = val*10 + int(c-'0')
		}
		digits++
	}
	if digits == 0 || val >= 128 {
		return 0, 0
	}
	if i < len(b) && b[i] == ';' {
		i++
	}
	return byte(val), i
}

func foldBytes(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = foldTable[c]
	}
	return out
}

// escapeStyle tells how the source bytes of a match were escaped, so that
// the replacement is written back the same way and still decodes.
type escapeStyle int

const (
	styleNone escapeStyle = iota
	styleURL
	styleEntity
	styleQP
)

func styleOf(src []byte) escapeStyle {
	qp := false
	for i, c := range src {
		switch c {
		case '%':
			return styleURL
		case '&':
			if i+1 < len(src) {
				return styleEntity
			}
		case '=':
			qp = true
		}
	}
	if qp {
		return styleQP
	}
	return styleNone
}

const upperHex = "0123456789ABCDEF"

func escape(repl []byte, st escapeStyle) []byte {
	if st == styleNone {
		return repl
	}
	out := make([]byte, 0, len(repl)*2)
	for _, c := range repl {
		switch st {
		case styleURL:
			if isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' {
				out = append(out, c)
			} else {
				out = append(out, '%', upperHex[c>>4], upperHex[c&15])
			}
		case styleEntity:
			if c == '@' {
				out = append(out, "&#64;"...)
			} else {
				out = append(out, c)
			}
		case styleQP:
			if c == '=' || c < 32 || c > 126 {
				out = append(out, '=', upperHex[c>>4], upperHex[c&15])
			} else {
				out = append(out, c)
			}
		}
	}
	return out
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
