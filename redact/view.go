package redact

import (
	"bytes"
	"hash"
	"sync"
)

// A view is a decoded rendering of a text in which every byte remembers the
// source bytes it came from, so that a needle found in the decoded text can be
// replaced in the source without decoding and re-encoding the rest of it. This
// keeps quoted-printable bodies, URLs and headers byte-identical outside the
// occurrences that are replaced.
//
// Searching needs only the decoded bytes, and almost every rendering is only
// searched. Spans cost eight bytes per byte, so they are recorded only when a
// rendering is built again for replacing (viewSet.spanView), after a search
// of it found something.
type view struct {
	b          []byte
	start, end []int32 // source span of b[i] is [start[i], end[i]), when withSpans
	withSpans  bool
}

// span returns the source span of the view bytes [i, j).
func (v *view) span(i, j int) (int, int) {
	return int(v.start[i]), int(v.end[j-1])
}

// reset empties v, keeping its buffers, for a rendering of a text of n
// bytes: no stage makes a text longer, so appends never reallocate.
func (v *view) reset(n int, spans bool) {
	v.b = emptyCap(v.b, n)
	v.withSpans = spans
	if spans {
		v.start = emptyCap(v.start, n)
		v.end = emptyCap(v.end, n)
	}
}

func emptyCap[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, 0, n)
	}
	return s[:0]
}

// add appends one decoded byte that came from src[s:e].
func (v *view) add(c byte, s, e int) {
	v.b = append(v.b, c)
	if v.withSpans {
		v.start = append(v.start, int32(s))
		v.end = append(v.end, int32(e))
	}
}

// copyRun appends src[s:e] as it is, every byte its own span.
func (v *view) copyRun(src []byte, s, e int) {
	v.b = append(v.b, src[s:e]...)
	if v.withSpans {
		for i := s; i < e; i++ {
			v.start = append(v.start, int32(i))
			v.end = append(v.end, int32(i+1))
		}
	}
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
// fields and many bodies skip the second scan. (One vectorised search per
// trigger byte is faster than one loop over all of them.)
func needsView(src []byte, hdr bool) bool {
	return bytes.IndexByte(src, '=') >= 0 || bytes.IndexByte(src, '%') >= 0 ||
		bytes.IndexByte(src, '&') >= 0 || hdr && bytes.IndexByte(src, '\n') >= 0
}

// A viewSet renders one text at a time into views it keeps, so that the
// buffers of one text's renderings are reused for the next text's. The
// renderings it returns are valid until its next render call.
type viewSet struct {
	pool []*view // every view allocated so far; the first used are in use
	used int
	out  []*view // the renderings of the current text
	src  view    // the text itself, as the base of a URL stage
}

func (vs *viewSet) alloc(n int, spans bool) *view {
	if vs.used == len(vs.pool) {
		vs.pool = append(vs.pool, &view{})
	}
	v := vs.pool[vs.used]
	vs.used++
	v.reset(n, spans)
	return v
}

// views renders src for searching: the decoded bytes of every rendering.
func (vs *viewSet) views(src []byte, hdr bool) []*view {
	return vs.render(src, hdr, false, -1)
}

// spanView renders src again with source spans, up to its k-th rendering,
// and returns that one. Rendering is deterministic and the spans do not
// take part in any decision, so its bytes are those of views(src, hdr)[k].
func (vs *viewSet) spanView(src []byte, hdr bool, k int) *view {
	out := vs.render(src, hdr, true, k)
	if k >= len(out) {
		return nil
	}
	return out[k]
}

// render renders src with the transport escapes an address commonly hides
// behind undone: quoted-printable (=XX, soft line breaks) and header folding,
// then URL percent-encoding and HTML character references, each also a
// second time (QP of QP, %2540). Every rendering is returned and searched,
// not only the last: decoding once more can destroy what one decoding
// revealed (a digest "=807b..." after a soft line break is not QP).
// Renderings that change nothing are left out; the raw text is not included.
// With limit >= 0 it stops once the limit-th rendering is made.
//
// A stage that would change nothing is not run at all (qpChanges,
// urlChanges): its rendering would be left out, and the next stage would
// see the same bytes with the same, identity, spans.
func (vs *viewSet) render(src []byte, hdr, spans bool, limit int) []*view {
	vs.used = 0
	vs.out = vs.out[:0]
	done := func() bool { return limit >= 0 && len(vs.out) > limit }
	// addURL adds the URL renderings of v; base tells that v is the text
	// itself, whose offsets are already source offsets.
	addURL := func(v *view, base bool) {
		for round := 0; round < maxRounds && !done(); round++ {
			if !urlChanges(v.b) {
				return
			}
			next := vs.alloc(len(v.b), spans)
			stageURL(next, v.b)
			if spans && !base {
				compose(v, next)
			}
			vs.out = append(vs.out, next)
			v, base = next, false
		}
	}
	vs.src = view{b: src}
	defer func() { vs.src = view{} }()
	q1, base := &vs.src, true
	if qpChanges(src, hdr) {
		q1, base = vs.alloc(len(src), spans), false
		stageQP(q1, src, hdr)
		vs.out = append(vs.out, q1)
	}
	addURL(q1, base)
	if !done() && qpChanges(q1.b, false) {
		q2 := vs.alloc(len(q1.b), spans)
		stageQP(q2, q1.b, false)
		if spans && !base {
			compose(q1, q2)
		}
		vs.out = append(vs.out, q2)
		addURL(q2, false)
	}
	return vs.out
}

const maxRounds = 2

// compose maps the spans of b (indices into a.b) to a's sources; b is
// fresh from a stage, so it is rewritten in place.
func compose(a, b *view) {
	for i := range b.b {
		s, e := int(b.start[i]), int(b.end[i])
		b.start[i] = a.start[s]
		b.end[i] = a.end[e-1]
	}
}

// scratch is the reusable memory of one Apply call, kept in the
// Redactor's pool from one call to the next.
type scratch struct {
	search  viewSet // renderings being searched
	spanned viewSet // a rendering rebuilt with spans for replacing
	acTable []int32 // a fallback automaton's dense table (at most maxDense entries)

	hm       hashMatcher
	byLower  map[string]int32 // the message's own targets
	dyn      []*target
	needles  []needle
	extra    []extraSpelling
	arena    []byte   // the message's needle patterns
	pats     [][]byte // the patterns, for building a matcher
	fpats    [][]byte
	ms       []match
	eds      []edit
	lowerBuf []byte
	mac      hash.Hash // HMAC with the policy's key (hmac mode)
}

// maxPooledView bounds what a pooled scratch keeps, so that one huge
// message does not pin its buffers for the next ones.
const maxPooledView = 4 << 20

func (sc *scratch) release(pool *sync.Pool) {
	for _, vs := range []*viewSet{&sc.search, &sc.spanned} {
		for _, v := range vs.pool {
			if cap(v.b) > maxPooledView {
				*vs = viewSet{}
				break
			}
			v.b = v.b[:0]
		}
		vs.out = vs.out[:0]
		vs.used = 0
	}
	pool.Put(sc)
}

// qpAt tells what stageQP does at src[i], a byte nextQPSpecial stopped at:
// n == 0, keep the byte; otherwise consume n bytes, emitting c if emit (an
// =XX escape) or nothing (a soft line break, a fold). Every decoding
// shortens the text, so a rendering changed iff some qpAt consumed.
func qpAt(src []byte, i int, hdr bool) (c byte, n int, emit bool) {
	if src[i] == '=' {
		if i+2 < len(src) {
			if h, ok := unhex(src[i+1]); ok {
				if l, ok := unhex(src[i+2]); ok {
					return h<<4 | l, 3, true
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
			return 0, j + 1 - i, false
		}
	}
	if hdr && (src[i] == '\r' || src[i] == '\n') {
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
				return 0, k - i, false
			}
		}
	}
	return 0, 0, false
}

// stageQP decodes quoted-printable (and, in a header, unfolds) src into v.
func stageQP(v *view, src []byte, hdr bool) {
	for i := 0; i < len(src); {
		// Copy the run up to the next byte that can start an escape.
		if j := i + nextQPSpecial(src[i:], hdr); j > i {
			v.copyRun(src, i, j)
			if i = j; i == len(src) {
				break
			}
		}
		c, n, emit := qpAt(src, i, hdr)
		switch {
		case n == 0:
			v.add(src[i], i, i+1)
			i++
		case emit:
			v.add(c, i, i+n)
			i += n
		default:
			i += n
		}
	}
}

// qpChanges reports whether stageQP(src, hdr) would decode anything. The
// stage keeps every byte before its first decoding, so that is the first
// special byte at which qpAt consumes.
func qpChanges(src []byte, hdr bool) bool {
	for i := 0; i < len(src); i++ {
		j := nextQPSpecial(src[i:], hdr)
		if i += j; i == len(src) {
			return false
		}
		if _, n, _ := qpAt(src, i, hdr); n > 0 {
			return true
		}
	}
	return false
}

func nextQPSpecial(b []byte, hdr bool) int {
	if !hdr {
		if k := bytes.IndexByte(b, '='); k >= 0 {
			return k
		}
		return len(b)
	}
	for k, c := range b {
		if c == '=' || c == '\r' || c == '\n' {
			return k
		}
	}
	return len(b)
}

// urlAt tells what stageURL does at src[i], a byte nextURLSpecial stopped
// at: n == 0, keep the byte; otherwise emit c for n bytes.
func urlAt(src []byte, i int) (c byte, n int) {
	switch src[i] {
	case '%':
		if i+2 < len(src) {
			if h, ok := unhex(src[i+1]); ok {
				if l, ok := unhex(src[i+2]); ok {
					return h<<4 | l, 3
				}
			}
		}
	case '&':
		return entity(src[i:])
	}
	return 0, 0
}

// stageURL decodes percent-encoding and character references in src into v.
func stageURL(v *view, src []byte) {
	sp := urlSpecials{b: src, pct: -1, amp: -1}
	for i := 0; i < len(src); {
		if j := sp.next(i); j > i {
			v.copyRun(src, i, j)
			if i = j; i == len(src) {
				break
			}
		}
		if c, n := urlAt(src, i); n > 0 {
			v.add(c, i, i+n)
			i += n
			continue
		}
		v.add(src[i], i, i+1)
		i++
	}
}

// urlChanges reports whether stageURL(src) would decode anything.
func urlChanges(src []byte) bool {
	sp := urlSpecials{b: src, pct: -1, amp: -1}
	for i := 0; i < len(src); i++ {
		if i = sp.next(i); i == len(src) {
			return false
		}
		if _, n := urlAt(src, i); n > 0 {
			return true
		}
	}
	return false
}

// urlSpecials finds the '%' and '&' bytes of a text in order. It remembers
// the next of each, so that every byte is searched once: searching afresh
// for both from every position is quadratic in "&#&#&#...".
type urlSpecials struct {
	b        []byte
	pct, amp int // next '%' and '&' at or after the last position asked; len(b) if none
}

// next returns the index of the first '%' or '&' at or after i, or len(b).
// Positions asked must not decrease.
func (sp *urlSpecials) next(i int) int {
	if sp.pct < i {
		sp.pct = indexFrom(sp.b, i, '%')
	}
	if sp.amp < i {
		sp.amp = indexFrom(sp.b, i, '&')
	}
	return min(sp.pct, sp.amp)
}

func indexFrom(b []byte, i int, c byte) int {
	if k := bytes.IndexByte(b[i:], c); k >= 0 {
		return i + k
	}
	return len(b)
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
			if len(b) >= len(e.name) && foldedEqual(b[:len(e.name)], e.name) {
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

// foldedEqual reports whether b, ASCII-folded, equals the lower-case s.
func foldedEqual(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if foldTable[c] != s[i] {
			return false
		}
	}
	return true
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

// appendEscaped appends repl to out, escaped in style st.
func appendEscaped(out, repl []byte, st escapeStyle) []byte {
	if st == styleNone {
		return append(out, repl...)
	}
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
