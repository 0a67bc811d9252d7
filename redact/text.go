package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
)

// session is the state of one Apply call. Its targets and needles are the
// static set's (ids from 0) followed by the message's own.
type session struct {
	r        *Redactor
	sc       *scratch
	nStatic  int32 // static targets
	nsNeedle int32 // static needles
	dyn      []*target
	needles  []needle // the message's own
	extra    []extraSpelling
	dynHash  bool       // the message's needles are in sc.hm
	merged   bool       // so are the static ones, under their own ids
	dynAC    *acMachine // else in this automaton (nil: none)
	sum      Summary
	err      error
	inEW     bool // counting matches inside encoded words
	inQP     bool // writing into a quoted-printable body
	skipped  bool // an overlapping occurrence was left for another round
	early    bool // late needles are not matched (first phase)
	// lateFiltered counts occurrences of late needles left for later
	lateFiltered int
	hasLate      bool // some needle is late
	lowerBuf     []byte
	// sink is the output buffer of the text being redacted, whose
	// redacted form goes from sinkStart on; inSink tells that the current
	// text already lives there.
	sink      *[]byte
	sinkStart int
	inSink    bool
}

// extraSpelling is a spelling of a configured address that the message
// writes (its base64 and digests differ from those of the configured one).
type extraSpelling struct {
	target   int32
	spelling string
}

// newSession starts an Apply call; the caller must call release when the
// call's results no longer refer to anything the session built.
func newSession(r *Redactor) *session {
	sc := r.pool.Get().(*scratch)
	if sc.byLower == nil {
		sc.byLower = map[string]int32{}
	}
	return &session{
		r: r, sc: sc,
		nStatic:  int32(len(r.static.targets)),
		nsNeedle: int32(len(r.static.needles)),
		dyn:      sc.dyn[:0],
		needles:  sc.needles[:0],
		extra:    sc.extra[:0],
		lowerBuf: sc.lowerBuf[:0],
	}
}

// release returns the session's buffers for reuse. Nothing Apply returns
// points into them: renderings are only searched and mapped back to spans.
func (s *session) release() {
	sc := s.sc
	if s.dynAC != nil && s.dynAC.delta != nil {
		sc.acTable = s.dynAC.delta[:0]
	}
	clear(s.dyn)
	clear(s.needles)
	clear(sc.byLower)
	sc.dyn, sc.needles, sc.extra, sc.lowerBuf = s.dyn[:0], s.needles[:0], s.extra[:0], s.lowerBuf[:0]
	sc.release(&s.r.pool)
	s.sc = nil
}

func (s *session) numTargets() int { return int(s.nStatic) + len(s.dyn) }

func (s *session) target(i int32) *target {
	if i < s.nStatic {
		return s.r.static.targets[i]
	}
	return s.dyn[i-s.nStatic]
}

func (s *session) needle(id int32) *needle {
	if id < s.nsNeedle {
		return &s.r.static.needles[id]
	}
	return &s.needles[id-s.nsNeedle]
}

func (s *session) lookup(lower string) (int32, bool) {
	if i, ok := s.r.static.byLower[lower]; ok {
		return i, true
	}
	i, ok := s.sc.byLower[lower]
	return i, ok
}

func (s *session) pseudonym(lower string, host bool) string {
	if s.r.mode == ModeToken {
		if host {
			return pseudoDomain
		}
		return TokenAddress
	}
	if s.sc.mac == nil {
		s.sc.mac = hmac.New(sha256.New, s.r.key)
	}
	if host {
		return s.r.keyed(s.sc.mac, lower) + "." + pseudoDomain
	}
	return s.r.keyed(s.sc.mac, lower) + "@" + pseudoDomain
}

// addTarget adds an address (or a new spelling of a known one).
func (s *session) addTarget(a string) {
	lower := strings.ToLower(a)
	if strings.HasSuffix(lower, "@"+pseudoDomain) {
		return // already a replacement
	}
	if i, ok := s.lookup(lower); ok {
		t := s.target(i)
		if a == lower || slices.Contains(t.variants, a) {
			return
		}
		if i >= s.nStatic {
			if len(t.variants) < maxVariants {
				t.variants = append(t.variants, a)
			}
			return
		}
		// A configured address is shared: its new spellings are the
		// message's.
		n := len(t.variants)
		for _, e := range s.extra {
			if e.target == i {
				if e.spelling == a {
					return
				}
				n++
			}
		}
		if n < maxVariants {
			s.extra = append(s.extra, extraSpelling{i, a})
		}
		return
	}
	t := newTarget(lower, s.pseudonym(lower, false), false)
	if a != lower {
		t.variants = append(t.variants, a)
	}
	s.sc.byLower[lower] = s.nStatic + int32(len(s.dyn))
	s.dyn = append(s.dyn, t)
}

// addHost adds a host name at a configured domain (ASCII).
func (s *session) addHost(h []byte) {
	s.lowerBuf = appendFolded(s.lowerBuf[:0], h)
	if _, ok := s.lookup(string(s.lowerBuf)); ok {
		return
	}
	lower := string(s.lowerBuf)
	s.sc.byLower[lower] = s.nStatic + int32(len(s.dyn))
	s.dyn = append(s.dyn, newTarget(lower, s.pseudonym(lower, true), true))
}

// build makes the matcher of the message's own needles: the hash matcher,
// cheap to build, or when it refuses them an automaton.
func (s *session) build() {
	sc := s.sc
	sc.arena = sc.arena[:0]
	for i, t := range s.dyn {
		s.needles = s.r.appendNeedles(s.needles, &sc.arena, t, s.nStatic+int32(i), t.variants, true)
	}
	for _, e := range s.extra {
		s.needles = s.r.appendNeedles(s.needles, &sc.arena, s.target(e.target), e.target, []string{e.spelling}, false)
	}
	s.hasLate = s.r.static.hasLate
	for i := range s.needles {
		s.hasLate = s.hasLate || s.needles[i].late
	}
	if st := &s.r.static; st.ac != nil && len(st.fpats) <= maxMergedStatic {
		sc.pats = append(append(sc.pats[:0], st.fpats...), s.fpats()...)
		if s.merged = sc.hm.build(sc.pats); s.merged {
			return
		}
	}
	if len(s.needles) == 0 {
		return
	}
	if s.dynHash = sc.hm.build(append(sc.pats[:0], s.fpats()...)); s.dynHash {
		return
	}
	sc.pats = sc.pats[:0]
	for i := range s.needles {
		sc.pats = append(sc.pats, s.needles[i].pat)
	}
	s.dynAC = newACMachine(sc.pats, sc.acTable)
}

// fpats returns the folded patterns of the message's own needles.
func (s *session) fpats() [][]byte {
	s.sc.fpats = s.sc.fpats[:0]
	for i := range s.needles {
		s.sc.fpats = append(s.sc.fpats, s.needles[i].fpat)
	}
	return s.sc.fpats
}

type match struct {
	id   int32
	s, e int
}

func isWordByte(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '-' || c == '+' || c >= 0x80
}

// find returns every accepted occurrence of every needle in text, static
// and the message's. The result is valid until the next call.
func (s *session) find(text []byte) []match {
	ms := s.sc.ms[:0]
	accept := func(id int32, st, en int) {
		n := s.needle(id)
		if n.late && s.early {
			s.lateFiltered++
			return
		}
		if n.exact != nil && !bytes.Equal(text[st:en], n.exact) {
			return
		}
		if n.bound && (st > 0 && isWordByte(text[st-1]) || en < len(text) && isWordByte(text[en])) {
			return
		}
		if n.hostBound && !hostBounded(text, st, en) {
			return
		}
		ms = append(ms, match{id, st, en})
	}
	if s.merged {
		s.sc.hm.scan(text, accept)
		s.sc.ms = ms
		return ms
	}
	if ac := s.r.static.ac; ac != nil {
		ac.scan(text, accept)
	}
	dyn := func(id int32, st, en int) { accept(id+s.nsNeedle, st, en) }
	if s.dynHash {
		s.sc.hm.scan(text, dyn)
	} else if s.dynAC != nil {
		s.dynAC.scan(text, dyn)
	}
	s.sc.ms = ms
	return ms
}

// edit is one replacement, in the coordinates of the text searched.
type edit struct {
	s, e int
	repl []byte
	form Form
}

func hasUpperHex(b []byte) bool {
	for _, c := range b {
		if c >= 'A' && c <= 'F' {
			return true
		}
	}
	return false
}

func (s *session) replacement(m match, text []byte) edit {
	n := s.needle(m.id)
	t := s.target(n.target)
	ed := edit{s: m.s, e: m.e, form: n.form}
	caseHex := func(h string) []byte {
		if hasUpperHex(text[m.s:m.e]) {
			h = strings.ToUpper(h)
		}
		return []byte(h)
	}
	switch n.form {
	case FormLiteral:
		ed.repl = t.pseudoBytes()
	case FormLocalPart:
		ed.repl = []byte(t.pseudo[:strings.LastIndexByte(t.pseudo, '@')])
	case FormUTF16:
		ed.repl = utf16Bytes(t.pseudo, n.bigEndian)
	case FormHex:
		ed.repl = caseHex(hex.EncodeToString([]byte(t.pseudo)))
	case FormMD5, FormSHA1, FormSHA256:
		for _, d := range digests {
			if d.form == n.form {
				ed.repl = caseHex(hex.EncodeToString(d.sum([]byte(t.pseudo))))
			}
		}
	case FormBase64, FormBase64URL:
		return s.b64Edit(m, n, t, text)
	}
	return ed
}

func isHex(c byte) bool { _, ok := unhex(c); return ok }

func isB64Char(c byte, std, url bool) bool {
	return isAlnum(c) || std && (c == '+' || c == '/') || url && (c == '-' || c == '_')
}

// b64Edit replaces base64 of an address sitting at any offset of a larger
// blob. It decodes only the quanta that carry the address, puts the
// pseudonym in its place and re-encodes them. The pseudonym is padded in its
// local part so its length is congruent mod 3 with what it replaces: every
// character of the blob after the edit then stays as it was, so a token in a
// URL keeps its structure and needs no knowledge of where the blob ends.
func (s *session) b64Edit(m match, n *needle, t *target, text []byte) edit {
	form := n.form
	fallback := func() edit {
		// Not decodable in context: still remove the characters, replacing
		// them with the pseudonym's at the same alignment.
		enc := base64.RawStdEncoding
		if form == FormBase64URL {
			enc = base64.RawURLEncoding
		}
		st, _ := b64Stable([]byte(t.pseudo), n.align, enc)
		return edit{s: m.s, e: m.e, repl: []byte(st), form: form}
	}
	q := m.s - n.stable
	if q < 0 {
		return fallback()
	}
	for i := q; i < m.s; i++ {
		if !isB64Char(text[i], true, true) {
			return fallback()
		}
	}
	full := q + 4*((n.align+n.n+2)/3)
	x := m.e
	for x < full && x < len(text) && isB64Char(text[x], true, true) {
		x++
	}
	if (x-q)%4 == 1 {
		x-- // a dangling character carries no whole byte; leave it
		if x < m.e {
			return fallback()
		}
	}
	chars := text[q:x]
	end := x
	padded := false
	if r := (x - q) % 4; r != 0 {
		want := 4 - r
		p := 0
		for end+p < len(text) && p < want && text[end+p] == '=' {
			p++
		}
		if p == want {
			padded = true
			end += p
		}
	}
	url := bytes.ContainsAny(chars, "-_")
	std := bytes.ContainsAny(chars, "+/")
	if url && std {
		return fallback()
	}
	enc := base64.RawStdEncoding
	if url {
		enc, form = base64.RawURLEncoding, FormBase64URL
	} else if std {
		form = FormBase64
	}
	w, err := enc.DecodeString(string(chars))
	if err != nil || len(w) < n.align {
		return fallback()
	}
	body := min(n.n, len(w)-n.align)
	prefix, tail := w[:n.align], w[n.align+body:]
	// The filler goes into the local part, or a host name's first label.
	sep := "@"
	if t.host {
		sep = "."
	}
	local, domain, _ := strings.Cut(t.pseudo, sep)
	need := ((body-len(t.pseudo))%3 + 3) % 3
	explicit := url || std
	var best []byte
	// Prefer a filler whose encoding needs neither +/ nor -_, so the result
	// is right whichever alphabet the surrounding blob uses.
	for try := 0; try < 64; try++ {
		filler := fillerString(need+3*(try/16), try)
		blob := make([]byte, 0, len(w)+8)
		blob = append(blob, prefix...)
		blob = append(blob, local+filler+sep+domain...)
		blob = append(blob, tail...)
		out := []byte(enc.EncodeToString(blob))
		if best == nil {
			best = out
		}
		if explicit || !bytes.ContainsAny(out, "+/-_") {
			best = out
			break
		}
	}
	if padded {
		for len(best)%4 != 0 {
			best = append(best, '=')
		}
	}
	return edit{s: q, e: end, repl: best, form: form}
}

// fillerString returns n characters, different for each try.
func fillerString(n, try int) string {
	const chars = "xyzwvutsrqponmlk"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[(try+i*7)%len(chars)]
	}
	return string(b)
}

// applyEdits selects non-overlapping edits (earliest first, then longest)
// and writes them into src. With a view, edits are in view coordinates and
// are mapped back to source spans, written in the source's escaping.
func (s *session) applyEdits(src []byte, v *view, eds []edit) ([]byte, bool) {
	if len(eds) == 0 {
		return src, false
	}
	slices.SortFunc(eds, func(a, b edit) int {
		if a.s != b.s {
			return a.s - b.s
		}
		return b.e - a.e
	})
	// The first rewrite of a text goes straight into the output buffer;
	// a later one, whose source is that buffer, into a new one that is
	// copied back.
	toSink := s.sink != nil && !s.inSink
	var out []byte
	if toSink {
		out = (*s.sink)[:s.sinkStart]
	} else {
		out = make([]byte, 0, len(src)+64)
	}
	last := 0
	prevEnd := -1
	for _, ed := range eds {
		if ed.s < prevEnd {
			// Inside the previous replacement, the occurrence is gone
			// with it (replacements hold no needle); overlapping it, it
			// may be whole again after this round.
			if ed.e > prevEnd {
				s.skipped = true
			}
			continue
		}
		if v == nil && s.inQP && ed.s > 0 && src[ed.s-1] == '=' && ed.s+1 < len(src) && isHex(src[ed.s]) && isHex(src[ed.s+1]) {
			// "to=3Dtrap@x" in quoted-printable: what matched begins
			// inside the escape =3D. The decoded rendering holds the
			// address itself and replaces it there, escape intact.
			continue
		}
		prevEnd = ed.e
		ss, se, form := ed.s, ed.e, ed.form
		st := styleNone
		if v == nil && s.inQP {
			// Base64 padding written raw into quoted-printable
			// would be read as a broken escape.
			st = styleQP
		}
		if v != nil {
			ss, se = v.span(ed.s, ed.e)
			st = styleOf(src[ss:se])
			if form == FormLiteral {
				switch st {
				case styleURL:
					form = FormURL
				case styleEntity:
					form = FormHTMLEntity
				case styleQP:
					form = FormQuotedPrintable
				}
			}
		}
		if s.inEW && (form == FormLiteral || form == FormQuotedPrintable) {
			form = FormEncodedWord
		}
		s.sum.counts[form]++
		out = append(out, src[last:ss]...)
		out = appendEscaped(out, ed.repl, st)
		last = se
	}
	out = append(out, src[last:]...)
	switch {
	case toSink:
		*s.sink, s.inSink = out, true
	case s.sink != nil:
		*s.sink = append((*s.sink)[:s.sinkStart], out...)
	default:
		return out, true
	}
	return (*s.sink)[s.sinkStart:], true
}

func (s *session) edits(text []byte) []edit {
	ms := s.find(text)
	if len(ms) == 0 {
		return nil
	}
	eds := s.sc.eds[:0]
	for _, m := range ms {
		eds = append(eds, s.replacement(m, text))
	}
	s.sc.eds = eds
	return eds
}

// redactText appends one text, redacted, to dst: a header value, a body, a
// preamble. hdr enables header unfolding; qpBody keeps a quoted-printable
// body's lines within the RFC 2045 limit. The first replacement writes
// straight into dst (see applyEdits), so a large text with a few
// occurrences is copied once.
func (s *session) redactText(dst, src []byte, hdr, qpBody bool) []byte {
	if hdr || len(src) <= maxChunk {
		return s.redactChunk(dst, src, hdr, qpBody)
	}
	for len(src) > 0 {
		n := chunkEnd(src)
		dst = s.redactChunk(dst, src[:n], false, qpBody)
		src = src[n:]
	}
	return dst
}

// maxChunk is the size from which a body text is redacted, and its
// renderings are built, piece by piece, so that the renderings and their
// spans (eight bytes a byte) of a large body take the memory of a piece,
// not of the body.
const maxChunk = 64 << 10

// chunkEnd returns the end of the first piece of a body text: after the
// first line break from maxChunk on that is not part of a quoted-printable
// soft line break. No needle and no rendering of a body crosses such a
// line break: needles hold no line break and only header unfolding and
// soft line breaks join lines.
func chunkEnd(b []byte) int {
	for i := maxChunk; i < len(b); {
		k := bytes.IndexByte(b[i:], '\n')
		if k < 0 {
			break
		}
		e := i + k
		j := e
		for j > 0 && (b[j-1] == '\r' || b[j-1] == ' ' || b[j-1] == '\t') {
			j--
		}
		if j == 0 || b[j-1] != '=' {
			return e + 1
		}
		i = e + 1
	}
	return len(b)
}

// redactChunk redacts one text, or one piece of a large body text.
func (s *session) redactChunk(dst, src []byte, hdr, qpBody bool) []byte {
	orig := src
	if bytes.Contains(src, []byte("=?")) {
		src = s.encodedWords(src)
	}
	start := len(dst)
	s.inQP = qpBody
	s.sink, s.sinkStart, s.inSink = &dst, start, false
	src = s.redactPlain(src, hdr)
	inSink := s.inSink
	s.sink, s.inSink, s.inQP = nil, false, false
	if qpBody && !bytes.Equal(src, orig) && maxLineLen(orig) <= 76 {
		return append(dst[:start], rewrapQP(src)...)
	}
	if inSink {
		return dst // src is dst[start:]
	}
	return append(dst, src...)
}

func (s *session) redactPlain(src []byte, hdr bool) []byte {
	if !s.hasLate {
		src, _ = s.redactPhase(src, hdr, false)
		return src
	}
	// Whole addresses first, in every rendering: replacing a local part
	// or the domain in the raw text first would leave
	// "r-1a2b%40trap.example" or "jo%40redacted.invalid", which no needle
	// finds any more, and the rest of the address with it.
	s.early = true
	src, clean := s.redactPhase(src, hdr, false)
	s.early = false
	// When the renderings of the text held no late needle either, they
	// need no second look unless the raw text changes now.
	src, _ = s.redactPhase(src, hdr, clean)
	return src
}

// redactPhase replaces what the needles allowed now find in src and its
// renderings. clean reports that the last search of every rendering found
// nothing, late needles included. With rawOnly, the renderings are searched
// only when the raw text changed.
func (s *session) redactPhase(src []byte, hdr, rawOnly bool) (out []byte, clean bool) {
	// A replacement can make an overlapping, skipped occurrence whole
	// again; a few rounds settle it, and the verifier checks the result.
	for round := 0; round < 3; round++ {
		s.skipped = false
		eds := s.edits(src)
		if out, ok := s.applyEdits(src, nil, eds); ok {
			src = out
		}
		if rawOnly && round == 0 && len(eds) == 0 {
			return src, true
		}
		clean = true
		if needsView(src, hdr) {
			vs := s.sc.search.views(src, hdr)
			late := s.lateFiltered
			for k, rebuilt := 0, 0; k < len(vs); k++ {
				eds := s.edits(vs[k].b)
				if len(eds) == 0 {
					continue
				}
				// Only now are the spans of this rendering needed.
				sv := s.sc.spanned.spanView(src, hdr, k)
				if sv == nil || !bytes.Equal(sv.b, vs[k].b) {
					// Cannot happen: rendering is deterministic and
					// spans decide nothing. Were it to, spans would
					// not fit the edits; leave the text to the
					// verifier rather than corrupt it.
					s.skipped = true
					break
				}
				if out, ok := s.applyEdits(src, sv, eds); ok {
					src = out
					// Spans refer to the old text, and renderings
					// that no longer change anything drop out of the
					// list: render again and start over. Every
					// rebuild follows a replacement, so this ends.
					if rebuilt++; rebuilt > 8 {
						s.skipped = true
						break
					}
					vs, k = s.sc.search.views(src, hdr), -1
					late = s.lateFiltered
				}
			}
			clean = s.lateFiltered == late
		}
		if !s.skipped {
			return src, clean
		}
	}
	return src, false
}

var ewRe = regexp.MustCompile(`=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=`)

// ewRuns groups encoded words separated only by whitespace: decoders join
// them, so an address split over several words is whole only in the run.
func ewRuns(src []byte) [][][]int {
	locs := ewRe.FindAllIndex(src, -1)
	var runs [][][]int
	for i, l := range locs {
		if i > 0 && len(bytes.Trim(src[locs[i-1][1]:l[0]], " \t\r\n")) == 0 {
			runs[len(runs)-1] = append(runs[len(runs)-1], l)
			continue
		}
		runs = append(runs, [][]int{l})
	}
	return runs
}

// decodeWord decodes one encoded word to UTF-8. For a charset go-message
// cannot convert, the raw bytes are returned: addresses are ASCII in every
// ASCII-compatible charset.
func decodeWord(w []byte) (text []byte, b bool) {
	parts := strings.SplitN(string(w[2:len(w)-2]), "?", 3)
	if len(parts) != 3 {
		return nil, false
	}
	cs, _, _ := strings.Cut(parts[0], "*")
	b = parts[1] == "b" || parts[1] == "B"
	var raw []byte
	if b {
		p := strings.TrimRight(parts[2], "=")
		raw, _ = base64.RawStdEncoding.DecodeString(p)
		if raw == nil {
			raw = lenientB64([]byte(p))
		}
	} else {
		q := strings.ReplaceAll(parts[2], "_", " ")
		raw = qpDecode([]byte(q))
	}
	switch strings.ToLower(cs) {
	case "utf-8", "us-ascii", "ascii", "utf8":
		return raw, b
	}
	r, err := charset.Reader(cs, bytes.NewReader(raw))
	if err != nil {
		return raw, b
	}
	dec, err := io.ReadAll(r)
	if err != nil {
		return raw, b
	}
	return dec, b
}

func decodeRun(src []byte, run [][]int) ([]byte, bool) {
	var text []byte
	b := false
	for i, l := range run {
		t, isB := decodeWord(src[l[0]:l[1]])
		if i == 0 {
			b = isB
		}
		text = append(text, t...)
	}
	return text, b
}

// encodedWords redacts inside RFC 2047 encoded words. A run that contained
// an address is replaced as a whole by UTF-8 encoded words of the redacted
// text, in the run's encoding (B or Q).
func (s *session) encodedWords(src []byte) []byte {
	runs := ewRuns(src)
	if len(runs) == 0 {
		return src
	}
	var out []byte
	last := 0
	for _, run := range runs {
		text, b := decodeRun(src, run)
		s.inEW = true
		red := s.redactPlain(text, false)
		s.inEW = false
		if bytes.Equal(red, text) {
			continue
		}
		start, end := run[0][0], run[len(run)-1][1]
		out = append(out, src[last:start]...)
		out = append(out, encodeWords(red, b)...)
		last = end
	}
	if out == nil {
		return src
	}
	return append(out, src[last:]...)
}

// encodeWords always encodes (even pure ASCII), so the run keeps the
// syntax it had, e.g. inside a display name.
func encodeWords(text []byte, b bool) []byte {
	if !utf8.Valid(text) {
		text = bytes.ToValidUTF8(text, []byte("\uFFFD"))
	}
	var out []byte
	const maxChunk = 45 // bytes of text per word keeps words under 75 chars
	for len(text) > 0 {
		n := min(maxChunk, len(text))
		for n < len(text) && n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		if n == 0 {
			n = min(maxChunk, len(text))
		}
		chunk := text[:n]
		text = text[n:]
		if len(out) > 0 {
			out = append(out, ' ')
		}
		if b {
			out = append(out, "=?utf-8?b?"+base64.StdEncoding.EncodeToString(chunk)+"?="...)
			continue
		}
		out = append(out, "=?utf-8?q?"...)
		for _, c := range chunk {
			switch {
			case c == ' ':
				out = append(out, '_')
			case isAlnum(c) || strings.IndexByte("!*+-/", c) >= 0:
				out = append(out, c)
			default:
				out = append(out, '=', upperHex[c>>4], upperHex[c&15])
			}
		}
		out = append(out, "?="...)
	}
	return out
}
