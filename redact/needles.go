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
	pseudo   string   // replacement address (host name for a host)
	variants []string // spellings: lower-cased, as given, as found in the message
	// host: a host name at a configured domain (the domain itself or a
	// subdomain), not an address; its literal form must stand as a name.
	host bool
}

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

func (s *session) needlesFor(ti int) {
	t := s.targets[ti]
	id := int32(ti)
	seen := map[string]bool{}
	add := func(n needle) {
		key := n.form.String() + ":" + string(n.pat)
		if n.exact != nil {
			key = "x" + string(n.exact)
		}
		if len(n.pat) == 0 || seen[key] {
			return
		}
		seen[key] = true
		n.target = id
		n.late = n.bound || t.host
		s.needles = append(s.needles, n)
	}
	add(needle{pat: []byte(t.lower), form: FormLiteral, hostBound: t.host})
	add(needle{pat: utf16Bytes(t.lower, false), form: FormUTF16})
	add(needle{pat: utf16Bytes(t.lower, true), form: FormUTF16, bigEndian: true})
	if s.r.localPart && !t.host {
		local := t.lower[:strings.LastIndexByte(t.lower, '@')]
		// A local part that occurs in the replacement would be
		// "found" again in every replacement.
		if !strings.Contains(t.pseudo, local) {
			add(needle{pat: []byte(local), form: FormLocalPart, bound: true})
		}
	}
	for _, v := range t.variants {
		vb := []byte(v)
		add(needle{pat: []byte(hex.EncodeToString(vb)), form: FormHex})
		for _, d := range digests {
			add(needle{pat: []byte(hex.EncodeToString(d.sum(vb))), form: d.form})
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
				add(needle{pat: []byte(st), exact: []byte(st), form: form, align: align, stable: first, n: len(vb)})
			}
		}
	}
}
