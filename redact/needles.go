package redact

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"unicode/utf16"
)

// A target is one address to redact, identified by its lower-cased form.
type target struct {
	lower    string
	pseudo   string // replacement address (host name for a host)
	pseudoB  []byte
	variants []string // spellings: lower-cased, as given, as found in the message
	// host: a host name at a configured domain (the domain itself or a
	// subdomain), not an address; its literal form must stand as a name.
	host bool
	// domain: a configured domain itself
	domain bool
}

// newTarget makes a target whose only spelling so far is lower.
func newTarget(lower, pseudo string, host bool) *target {
	return &target{lower: lower, pseudo: pseudo, pseudoB: []byte(pseudo), variants: []string{lower}, host: host}
}

// pseudoBytes is the replacement as bytes, shared: edits only read it.
func (t *target) pseudoBytes() []byte { return t.pseudoB }

// maxVariants bounds the spellings per address an adversary can make us
// generate needles for.
const maxVariants = 8

// minStable is the shortest run of base64 characters that is searched for:
// shorter runs of very short addresses would match random base64 data.
const minStable = 6

type needle struct {
	pat    []byte // searched ASCII-folded
	exact  []byte // when set, the match must equal it byte for byte (base64)
	form   Form
	target int32
	// base64 forms
	align  int // bytes of the blob before the address, 0..2
	stable int // index in the blob's encoding of the first needle character
	n      int // length of the address spelling
	// utf16
	bigEndian bool
	// local part: a whole word only
	bound bool
	// host name: not inside a longer name
	hostBound bool
	// domain: the literal of a configured domain (finds its host names)
	domain bool
	// fpat is pat ASCII-folded (the hash matcher compares folded bytes)
	fpat []byte
	// late: matched only once whole addresses are replaced in every
	// rendering (local parts, host names: parts of an address)
	late bool
}

// digests is the order of the digest forms.
var digests = [...]struct {
	form Form
	sum  func([]byte) []byte
}{
	{FormMD5, func(b []byte) []byte { s := md5.Sum(b); return s[:] }},
	{FormSHA1, func(b []byte) []byte { s := sha1.Sum(b); return s[:] }},
	{FormSHA256, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
}

func utf16Bytes(s string, bigEndian bool) []byte {
	u := utf16.Encode([]rune(s))
	out := make([]byte, 0, 2*len(u))
	for _, c := range u {
		if bigEndian {
			out = append(out, byte(c>>8), byte(c))
		} else {
			out = append(out, byte(c), byte(c>>8))
		}
	}
	return out
}

// b64Stable returns the characters of the encoding of addr preceded by align
// bytes that depend on addr alone, and the index of the first of them.
func b64Stable(addr []byte, align int, enc *base64.Encoding) (string, int) {
	blob := make([]byte, align+len(addr))
	copy(blob[align:], addr)
	e := enc.EncodeToString(blob)
	s := (8*align + 5) / 6
	end := 8 * (align + len(addr)) / 6
	if end <= s {
		return "", s
	}
	return e[s:end], s
}

// appendNeedles appends the needles of target t (id ti) to dst: its base
// forms (literal, UTF-16, local part) when base is set, and the hex, digest
// and base64 forms of each of the spellings. Patterns are written into
// *arena when it is not nil (a per-message buffer), else allocated.
func (r *Redactor) appendNeedles(dst []needle, arena *[]byte, t *target, ti int32, spellings []string, base bool) []needle {
	put := func(b []byte) []byte {
		if arena == nil {
			return append([]byte(nil), b...)
		}
		at := len(*arena)
		*arena = append(*arena, b...)
		return (*arena)[at:len(*arena):len(*arena)]
	}
	first := len(dst)
	add := func(n needle) {
		if len(n.pat) == 0 {
			return
		}
		for i := first; i < len(dst); i++ {
			if dst[i].form == n.form && string(dst[i].pat) == string(n.pat) {
				return
			}
		}
		n.target = ti
		n.late = n.bound || t.host
		n.fpat = n.pat
		if n.exact != nil {
			n.fpat = put(appendFolded(nil, n.pat))
		}
		dst = append(dst, n)
	}
	var tmp [2 * 320]byte // hex of the longest address
	if base {
		add(needle{pat: put([]byte(t.lower)), form: FormLiteral, hostBound: t.host, domain: t.domain})
		add(needle{pat: put(utf16Bytes(t.lower, false)), form: FormUTF16})
		add(needle{pat: put(utf16Bytes(t.lower, true)), form: FormUTF16, bigEndian: true})
		if r.localPart && !t.host {
			local := t.lower[:strings.LastIndexByte(t.lower, '@')]
			// A local part that occurs in the replacement would be
			// "found" again in every replacement.
			if !strings.Contains(t.pseudo, local) {
				add(needle{pat: put([]byte(local)), form: FormLocalPart, bound: true})
			}
		}
	}
	for _, v := range spellings {
		vb := []byte(v)
		if 2*len(vb) <= len(tmp) {
			add(needle{pat: put(hex.AppendEncode(tmp[:0], vb)), form: FormHex})
		}
		for _, d := range digests {
			add(needle{pat: put(hex.AppendEncode(tmp[:0], d.sum(vb))), form: d.form})
		}
		for align := 0; align < 3; align++ {
			for _, url := range []bool{false, true} {
				enc, form := base64.RawStdEncoding, FormBase64
				if url {
					enc, form = base64.RawURLEncoding, FormBase64URL
				}
				st, first := b64Stable(vb, align, enc)
				if len(st) < minStable {
					continue
				}
				p := put([]byte(st))
				add(needle{pat: p, exact: p, form: form, align: align, stable: first, n: len(vb)})
			}
		}
	}
	return dst
}
