package redact

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

func pathString(path []int) string {
	if len(path) == 0 {
		return "the top-level entity"
	}
	s := make([]string, len(path))
	for i, p := range path {
		s[i] = strconv.Itoa(p)
	}
	return "part " + strings.Join(s, ".")
}

func errTooDeep(path []int) error {
	return fmt.Errorf("%w: MIME nesting deeper than %d at %s", ErrUnredactable, maxDepth, pathString(path))
}

// entity appends one entity (a message or a body part), rewritten, to dst.
// The rewriting functions append to one output buffer, so that a large
// message is copied once and not once per level.
func (s *session) entity(dst, b []byte, path []int, depth int) []byte {
	if depth > maxDepth {
		if s.err == nil {
			s.err = errTooDeep(path)
		}
		return append(dst, b...)
	}
	fields, hdrEnd, bodyStart := parseHeader(b)
	for _, f := range fields {
		dst = append(dst, b[f.start:f.val]...)
		dst = s.redactText(dst, b[f.val:f.end], true, false)
	}
	dst = append(dst, b[hdrEnd:bodyStart]...)
	mt, boundary, cs := contentType(headerValue(b, fields, "Content-Type"))
	cte := strings.ToLower(headerValue(b, fields, "Content-Transfer-Encoding"))
	return s.body(dst, b[bodyStart:], mt, boundary, cs, cte, path, depth)
}

func (s *session) body(dst, b []byte, mt, boundary, cs, cte string, path []int, depth int) []byte {
	k := classify(mt, boundary)
	switch cte {
	case "base64":
		dec, lay, ok := decodeB64Body(b)
		if !ok {
			// Not decodable: redact what is visible; the verifier decodes
			// leniently and fails the message if anything hides inside.
			return s.redactText(dst, b, false, false)
		}
		red := s.content(nil, dec, k, boundary, path, depth)
		if k == kindText {
			red, _ = s.utf16Text(red, cs)
		}
		if bytes.Equal(red, dec) {
			return append(dst, b...)
		}
		s.sum.counts[FormBase64Part]++
		return append(dst, encodeB64Body(red, lay)...)
	case "quoted-printable":
		if k == kindText {
			return s.redactText(dst, b, false, true)
		}
		dec := qpDecode(b)
		red := s.content(nil, dec, k, boundary, path, depth)
		if bytes.Equal(red, dec) {
			return append(dst, b...)
		}
		return append(dst, qpEncode(red, eolOf(b))...)
	}
	start := len(dst)
	dst = s.content(dst, b, k, boundary, path, depth)
	if k == kindText {
		if red, changed := s.utf16Text(dst[start:], cs); changed {
			dst = append(dst[:start], red...)
		}
	}
	return dst
}

// utf16Text redacts UTF-16 text transcoded to UTF-8 (see utf16.go); the
// result is new when changed, else b.
func (s *session) utf16Text(b []byte, cs string) (red []byte, changed bool) {
	is, be, bom := utf16Order(cs, b)
	if !is {
		return b, false
	}
	body := b
	if bom {
		body = b[2:]
	}
	odd := body[len(body)&^1:]
	text := utf16ToUTF8(b[:len(b)-len(odd)], be, bom)
	red = s.redactText(nil, text, false, false)
	if bytes.Equal(red, text) {
		return b, false
	}
	return utf8ToUTF16(red, be, bom, odd), true
}

func (s *session) content(dst, b []byte, k kind, boundary string, path []int, depth int) []byte {
	switch k {
	case kindMessage:
		return s.entity(dst, b, path, depth+1)
	case kindMultipart:
		segs, ok := splitMultipart(b, boundary)
		if !ok {
			return s.redactText(dst, b, false, false)
		}
		n := 0
		for _, sg := range segs {
			switch {
			case sg.delim:
				dst = append(dst, b[sg.start:sg.end]...)
			case sg.part:
				n++
				dst = s.entity(dst, b[sg.start:sg.end], append(path[:len(path):len(path)], n), depth+1)
			default:
				dst = s.redactText(dst, b[sg.start:sg.end], false, false)
			}
		}
		return dst
	}
	return s.redactText(dst, b, false, false)
}

// visitor receives what the read-only walk finds.
type visitor interface {
	field(path []int, name, value []byte) error
	text(path []int, b []byte, hdr bool) error
}

// walk visits every header field and every text of an entity, decoding
// base64 leniently (so undecodable content is still looked into) and also
// passing the raw body, so nothing is seen only in one form.
func walk(b []byte, path []int, depth int, v visitor) (err error) {
	if depth > maxDepth {
		return errTooDeep(path)
	}
	fields, _, bodyStart := parseHeader(b)
	for _, f := range fields {
		if err := v.field(path, f.name, b[f.val:f.end]); err != nil {
			return err
		}
	}
	mt, boundary, cs := contentType(headerValue(b, fields, "Content-Type"))
	cte := strings.ToLower(headerValue(b, fields, "Content-Transfer-Encoding"))
	k := classify(mt, boundary)
	body := b[bodyStart:]
	defer func() {
		if err == nil && k == kindText {
			err = walkUTF16(body, cte, cs, path, v)
		}
	}()
	switch cte {
	case "base64":
		if err := v.text(path, body, false); err != nil {
			return err
		}
		dec, _, ok := decodeB64Body(body)
		if !ok {
			dec = lenientB64(body)
		}
		return walkContent(dec, k, boundary, path, depth, v)
	case "quoted-printable":
		if k != kindText {
			if err := v.text(path, body, false); err != nil {
				return err
			}
			return walkContent(qpDecode(body), k, boundary, path, depth, v)
		}
	}
	return walkContent(body, k, boundary, path, depth, v)
}

// walkUTF16 shows a visitor the UTF-8 transcoding of UTF-16 text.
func walkUTF16(body []byte, cte, cs string, path []int, v visitor) error {
	if is, _, _ := utf16Order(cs, nil); !is {
		// The charset alone decides; do not decode base64 for nothing.
		return nil
	}
	if cte == "base64" {
		if dec, _, ok := decodeB64Body(body); ok {
			body = dec
		} else {
			body = lenientB64(body)
		}
	}
	is, be, bom := utf16Order(cs, body)
	if !is {
		return nil
	}
	return v.text(path, utf16ToUTF8(body[:len(body)&^1], be, bom), false)
}

func walkContent(b []byte, k kind, boundary string, path []int, depth int, v visitor) error {
	switch k {
	case kindMessage:
		return walk(b, path, depth+1, v)
	case kindMultipart:
		segs, ok := splitMultipart(b, boundary)
		if !ok {
			return v.text(path, b, false)
		}
		n := 0
		for _, sg := range segs {
			var err error
			switch {
			case sg.delim:
			case sg.part:
				n++
				err = walk(b[sg.start:sg.end], append(path[:len(path):len(path)], n), depth+1, v)
			default:
				err = v.text(path, b[sg.start:sg.end], false)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return v.text(path, b, false)
}

// eachText calls fn for the text and the views a search must cover: the
// raw bytes, the normalised view, and every decoded encoded-word run. The
// renderings are built in vs and valid only during the call of fn.
func eachText(vs *viewSet, b []byte, hdr bool, fn func(t []byte) error) error {
	if err := fn(b); err != nil {
		return err
	}
	for rest := b; len(rest) > 0; {
		c := rest
		if !hdr && len(rest) > maxChunk {
			c = rest[:chunkEnd(rest)]
		}
		rest = rest[len(c):]
		if !needsView(c, hdr) {
			continue
		}
		for _, v := range vs.views(c, hdr) {
			if err := fn(v.b); err != nil {
				return err
			}
		}
	}
	if bytes.Contains(b, []byte("=?")) {
		for _, run := range ewRuns(b) {
			dec, _ := decodeRun(b, run)
			if err := fn(dec); err != nil {
				return err
			}
			if needsView(dec, false) {
				for _, v := range vs.views(dec, false) {
					if err := fn(v.b); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// atAddrs calls fn for every address-like token around an '@' in t: the
// longest local part the syntax allows and, when that begins with URL or
// list punctuation, also the part after it.
//
// The domain is passed as written: it is ASCII (letters, digits, '-', '.'),
// so domainMatch compares it ASCII-folded without lower-casing a copy.
func atAddrs(t []byte, fn func(addr, domain []byte)) {
	for i := 0; i < len(t); {
		j := bytes.IndexByte(t[i:], '@')
		if j < 0 {
			return
		}
		at := i + j
		i = at + 1
		// RFC 5321 limits (64 octets of local part, 255 of domain) bound
		// the work per '@' and the size of the needles an adversary can
		// make us build.
		e := at + 1
		for e < len(t) && e-at <= 255 && (isAlnum(t[e]) || t[e] == '-' || t[e] == '.') {
			e++
		}
		for e > at+1 && t[e-1] == '.' {
			e--
		}
		if e == at+1 {
			continue
		}
		st := at
		for st > 0 && at-st < 64 && isAtext(t[st-1]) {
			st--
		}
		// In a URL the longest local part runs back over the host, path
		// and query ("//spam.example/t?u=trap"): the address starts after
		// the last delimiter, so that only it is replaced and the URL
		// stays evidence.
		st += urlLocalStart(t[st:at])
		if st == at {
			continue
		}
		dom := t[at+1 : e]
		fn(t[st:e], dom)
		for k := at - 1; k > st; k-- {
			if strings.IndexByte("=/?&'|!#$^`{}~*%", t[k-1]) >= 0 {
				fn(t[k:e], dom)
				break
			}
		}
	}
}

// urlLocalStart returns where an address starts in the local-part-shaped
// token lp: after the last URL delimiter when lp holds a path or query
// ('/' or '?', which recipient addresses do not use in practice), else 0.
func urlLocalStart(lp []byte) int {
	if bytes.IndexByte(lp, '/') < 0 && bytes.IndexByte(lp, '?') < 0 {
		return 0
	}
	for i := len(lp) - 1; i >= 0; i-- {
		switch lp[i] {
		case '/', '?', '#', '&', '=':
			return i + 1
		}
	}
	return 0
}

func appendFolded(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, foldTable[c])
	}
	return dst
}

func isAtext(c byte) bool { return atextTable[c] }

var atextTable = func() (t [256]bool) {
	for c := range t {
		t[c] = isAlnum(byte(c)) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", byte(c)) >= 0
	}
	return t
}()

func isLabelByte(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

// escapedBefore reports whether the two bytes before i end a %XX or =XX
// escape, after which a name may start though they are label bytes.
func escapedBefore(t []byte, i int) bool {
	return i >= 3 && (t[i-3] == '%' || t[i-3] == '=') && isHex(t[i-2]) && isHex(t[i-1])
}

// hostBounded reports whether t[s:e] stands as a whole host name: not
// preceded by a label byte (but by a dot, an escape or anything else), not
// followed by a label byte or by a dot and a label byte (a longer name,
// such as the configured domain under another TLD).
func hostBounded(t []byte, s, e int) bool {
	if s > 0 && isLabelByte(t[s-1]) && !escapedBefore(t, s) {
		return false
	}
	if e < len(t) && (isLabelByte(t[e]) || t[e] == '.' && e+1 < len(t) && isLabelByte(t[e+1])) {
		return false
	}
	return true
}

// hostsAt calls fn for every host name in t at one of the configured
// domains: the domain itself or a subdomain, extended to the left over
// labels (an escape such as %2F before it is not part of the name).
//
// The domains are found by their anchors (see domainAnchor) when every
// domain has one: a vectorised search for one byte and a comparison at each
// hit, instead of a step of the static automaton for every byte of every
// text and rendering discovery looks at. The occurrences are the same and
// are reported in the automaton's order (by end, the longer first), so the
// two ways are interchangeable (TestHostsAtAnchored).
func (r *Redactor) hostsAt(t []byte, fn func(host []byte)) {
	st := &r.static
	if !st.anchored {
		st.ac.scan(t, func(id int32, s, e int) {
			if st.needles[id].domain {
				hostAt(t, s, e, fn)
			}
		})
		return
	}
	if len(st.anchors) == 1 {
		st.anchors[0].each(t, func(s, e int) { hostAt(t, s, e, fn) })
		return
	}
	var buf [16][2]int
	occ := buf[:0]
	for _, a := range st.anchors {
		a.each(t, func(s, e int) { occ = append(occ, [2]int{s, e}) })
	}
	slices.SortFunc(occ, func(x, y [2]int) int {
		if x[1] != y[1] {
			return x[1] - y[1]
		}
		return x[0] - y[0]
	})
	for _, o := range occ {
		hostAt(t, o[0], o[1], fn)
	}
}

// hostAt calls fn for the host name around t[s:e], an occurrence of a
// configured domain, if the occurrence stands as a name.
func hostAt(t []byte, s, e int, fn func(host []byte)) {
	if !hostBounded(t, s, e) {
		return
	}
	for s > 0 && t[s-1] == '.' {
		k := s - 1
		for k > 0 && isLabelByte(t[k-1]) && !escapedBefore(t, k) && s-k < 64 {
			k--
		}
		if k == s-1 {
			break // ".." or a dot after something else
		}
		s = k
	}
	fn(t[s:e])
}

// A domainAnchor finds the ASCII-folded occurrences of a configured domain
// through a byte of it that folding leaves alone (not a letter): every
// occurrence holds that byte at the same offset, and each hit of the byte
// is checked once, so overlapping occurrences are all found.
type domainAnchor struct {
	domain string
	at     int  // offset of the anchor byte in domain
	c      byte // domain[at]
}

// newDomainAnchor picks the anchor of d, preferring a byte rarer in mail
// than '.': a digit, '-' or another non-letter. ok is false when d is all
// letters.
func newDomainAnchor(d string) (a domainAnchor, ok bool) {
	rank := func(c byte) int {
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			return 0
		case c == '.':
			return 1
		}
		return 2
	}
	best := 0
	for i := range len(d) {
		if r := rank(d[i]); r > best {
			a, best = domainAnchor{domain: d, at: i, c: d[i]}, r
		}
	}
	return a, best > 0
}

// each calls fn(start, end) for every occurrence of the domain in t, in
// order.
func (a domainAnchor) each(t []byte, fn func(s, e int)) {
	n := len(a.domain)
	for i := a.at; i < len(t); {
		k := bytes.IndexByte(t[i:], a.c)
		if k < 0 {
			return
		}
		p := i + k
		if s := p - a.at; s+n <= len(t) && foldedEqual(t[s:s+n], a.domain) {
			fn(s, s+n)
		}
		i = p + 1
	}
}

// domainMatch reports whether dom (ASCII, any case) is one of the policy's
// domains or a subdomain of one.
func (r *Redactor) domainMatch(dom []byte) bool {
	for _, d := range r.domains {
		if len(dom) == len(d) && foldedEqual(dom, d) ||
			len(dom) > len(d) && dom[len(dom)-len(d)-1] == '.' && foldedEqual(dom[len(dom)-len(d):], d) {
			return true
		}
	}
	return false
}

// discoverer collects, before redaction, the spellings of known addresses
// as the message writes them (their base64 and digests differ from the
// lower-cased address's) and the addresses at configured domains.
type discoverer struct{ s *session }

func (d discoverer) field(path []int, name, value []byte) error { return d.text(path, value, true) }

func (d discoverer) text(_ []int, b []byte, hdr bool) error {
	return eachText(&d.s.sc.search, b, hdr, func(t []byte) error {
		atAddrs(t, func(a, dom []byte) {
			// a is ASCII (atext, '@', domain bytes): folding it is
			// lower-casing it. The map lookup does not copy the key.
			d.s.lowerBuf = appendFolded(d.s.lowerBuf[:0], a)
			if _, ok := d.s.lookup(string(d.s.lowerBuf)); ok || d.s.r.domainMatch(dom) {
				d.s.addTarget(string(a))
			}
		})
		if len(d.s.r.domains) > 0 {
			d.s.r.hostsAt(t, d.s.addHost)
		}
		return nil
	})
}

// verifier fails on any needle or configured-domain address left in the
// output, looking at the whole message raw and at every decoded part.
type verifier struct{ s *session }

func (v verifier) field(path []int, _ []byte, value []byte) error {
	return v.check(path, value, true)
}

func (v verifier) text(path []int, b []byte, hdr bool) error { return v.check(path, b, hdr) }

func (v verifier) check(path []int, b []byte, hdr bool) error {
	return eachText(&v.s.sc.search, b, hdr, func(t []byte) error {
		if ms := v.s.find(t); len(ms) > 0 {
			form := v.s.needle(ms[0].id).form
			return fmt.Errorf("%w: a %s form of an address survived in %s", ErrUnredactable, form, pathString(path))
		}
		var err error
		atAddrs(t, func(a, dom []byte) {
			if err == nil && v.s.r.domainMatch(dom) {
				err = fmt.Errorf("%w: an address at a redacted domain survived in %s", ErrUnredactable, pathString(path))
			}
		})
		// A host name at a configured domain is found by the domain's own
		// literal needle, which find only accepts as a whole name.
		return err
	})
}

func (s *session) verify(out []byte) error {
	v := verifier{s}
	// The whole message as bytes covers what no part owns: delimiters,
	// boundaries, header names, text after a broken structure.
	if err := v.check(nil, out, false); err != nil {
		return err
	}
	return walk(out, nil, 0, v)
}
