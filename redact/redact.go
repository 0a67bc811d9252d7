package redact

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/mail"
	"slices"
	"strings"
	"sync"
)

// Mode selects what an address is replaced with.
type Mode int

const (
	// ModeToken replaces every address with TokenAddress.
	ModeToken Mode = iota
	// ModeHMAC replaces an address with r-<12 hex>@redacted.invalid, the hex
	// being the start of HMAC-SHA256(key, lower-cased address): stable for
	// one key, so hits on one trap correlate without revealing it.
	ModeHMAC
)

// TokenAddress is the replacement in ModeToken; it keeps address syntax valid.
const TokenAddress = "redacted@redacted.invalid"

// pseudoDomain is the domain of every replacement (RFC 2606 .invalid).
const pseudoDomain = "redacted.invalid"

// HeaderName is the header Apply adds at the top of every message.
const HeaderName = "X-Xarfd-Redacted"

// ParseMode maps the configuration token ("token", "hmac") to a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "token", "":
		return ModeToken, nil
	case "hmac":
		return ModeHMAC, nil
	}
	return 0, fmt.Errorf("redact: unknown mode %q (want token or hmac)", s)
}

func (m Mode) String() string {
	if m == ModeHMAC {
		return "hmac"
	}
	return "token"
}

// Policy is one channel's redaction configuration, built by the caller from
// the channel's redact: keys.
type Policy struct {
	// Hostname names this host in the X-Xarfd-Redacted header.
	Hostname string
	Mode     Mode
	// HMACKey is required (at least 16 bytes) in ModeHMAC.
	HMACKey []byte
	// Addresses are redacted in every message of the channel.
	Addresses []string
	// Domains: any address at one of them, or at a subdomain, is redacted.
	Domains []string
	// LocalPart also redacts the local part of every address standing alone.
	LocalPart bool
}

// Redactor applies one Policy. It is the policy compiled: the configured
// addresses and domains with all their needles and the automaton over them
// are built once by New, so that a message pays only for its own
// recipients. It is immutable (apart from its pool of buffers) and safe for
// concurrent use; a configuration reload builds a new one.
type Redactor struct {
	host      string
	mode      Mode
	key       []byte
	addresses []string
	domains   []string
	localPart bool

	static staticSet
	// pool holds the per-message buffers (renderings, matcher tables) of
	// this policy's Apply calls, so that they are reused from message to
	// message.
	pool sync.Pool
}

// staticSet is the part of the redaction set every message shares: the
// configured addresses, then the configured domains as host names. Target
// and needle ids of a message continue after these.
type staticSet struct {
	targets []*target
	byLower map[string]int32
	needles []needle
	fpats   [][]byte   // the needles' folded patterns
	ac      *acMachine // nil without needles
	hasLate bool
	// anchors find the configured domains (hostsAt); anchored tells that
	// every domain has one, else the automaton finds them.
	anchors  []domainAnchor
	anchored bool
}

// maxMergedStatic: a static set up to this many needles is filed in each
// message's hash matcher with the message's own needles (a few table
// inserts), so that a text is scanned once; a larger one is scanned with
// its own automaton, then the message's needles with theirs.
const maxMergedStatic = 256

// ErrUnredactable is wrapped by Apply's error when it cannot guarantee that
// no form of an address remains (an address survived in a part it could not
// rewrite, such as a MIME boundary or undecodable base64, or the message
// nests too deeply). The caller must quarantine the message and must not
// store or show the original. The error text never contains an address.
var ErrUnredactable = errors.New("redact: cannot guarantee redaction")

// New validates a Policy.
func New(p Policy) (*Redactor, error) {
	if p.Hostname == "" || strings.ContainsAny(p.Hostname, " \t\r\n;") {
		return nil, errors.New("redact: hostname must be set and must not contain whitespace or ';'")
	}
	r := &Redactor{host: p.Hostname, mode: p.Mode, localPart: p.LocalPart}
	switch p.Mode {
	case ModeToken:
	case ModeHMAC:
		if len(p.HMACKey) < 16 {
			return nil, errors.New("redact: hmac mode needs a key of at least 16 bytes")
		}
		r.key = bytes.Clone(p.HMACKey)
	default:
		return nil, fmt.Errorf("redact: unknown mode %d", p.Mode)
	}
	for i, a := range p.Addresses {
		n, ok := normalizeAddr(a)
		if !ok {
			// The value itself is not echoed: it may be the address.
			return nil, fmt.Errorf("redact: addresses[%d] is not an address", i)
		}
		r.addresses = append(r.addresses, n)
	}
	for i, d := range p.Domains {
		d = strings.Trim(strings.ToLower(strings.TrimSpace(d)), ".")
		d = strings.TrimPrefix(d, "*.")
		d = strings.TrimPrefix(d, "@")
		if d == "" || strings.ContainsAny(d, " \t\r\n@") {
			return nil, fmt.Errorf("redact: domains[%d] is not a domain", i)
		}
		if pseudoDomain == d || strings.HasSuffix(pseudoDomain, "."+d) {
			// Every replacement would count as a surviving address.
			return nil, fmt.Errorf("redact: domains[%d] covers the replacement domain %s", i, pseudoDomain)
		}
		r.domains = append(r.domains, d)
	}
	r.compile()
	r.pool.New = func() any { return new(scratch) }
	return r, nil
}

// compile builds the static set.
func (r *Redactor) compile() {
	st := &r.static
	st.byLower = map[string]int32{}
	for _, a := range r.addresses {
		lower := strings.ToLower(a)
		if i, ok := st.byLower[lower]; ok {
			if t := st.targets[i]; len(t.variants) < maxVariants && !slices.Contains(t.variants, a) {
				t.variants = append(t.variants, a)
			}
			continue
		}
		t := newTarget(lower, r.pseudonym(lower), false)
		if a != lower {
			t.variants = append(t.variants, a)
		}
		st.byLower[lower] = int32(len(st.targets))
		st.targets = append(st.targets, t)
	}
	for _, d := range r.domains {
		if _, ok := st.byLower[d]; ok {
			continue
		}
		st.byLower[d] = int32(len(st.targets))
		t := newTarget(d, r.hostPseudonym(d), true)
		t.domain = true
		st.targets = append(st.targets, t)
	}
	for i, t := range st.targets {
		st.needles = r.appendNeedles(st.needles, nil, t, int32(i), t.variants, true)
	}
	if len(st.needles) == 0 {
		return
	}
	pats := make([][]byte, len(st.needles))
	for i := range st.needles {
		pats[i] = st.needles[i].pat
		st.fpats = append(st.fpats, st.needles[i].fpat)
		st.hasLate = st.hasLate || st.needles[i].late
	}
	st.ac = newACMachine(pats, nil)
	st.anchored = true
	for _, n := range st.needles {
		if n.domain {
			a, ok := newDomainAnchor(string(n.pat))
			st.anchors = append(st.anchors, a)
			st.anchored = st.anchored && ok
		}
	}
}

// normalizeAddr reduces the ways callers and headers write an address
// ("<a@b>", "mailto:a@b", "rfc822; a@b", "Name <a@b>") to the address.
func normalizeAddr(a string) (string, bool) {
	a = strings.TrimSpace(a)
	if l := strings.ToLower(a); strings.HasPrefix(l, "rfc822;") || strings.HasPrefix(l, "mailto:") {
		a = strings.TrimSpace(a[7:])
	}
	if strings.ContainsAny(a, "<> \t\"") {
		if pa, err := mail.ParseAddress(a); err == nil {
			a = pa.Address
		}
	}
	a = strings.Trim(a, "<>")
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 320 || strings.ContainsAny(a, " \t\r\n<>") {
		return "", false
	}
	return a, true
}

// pseudonym is the replacement address for a lower-cased address.
func (r *Redactor) pseudonym(lower string) string {
	if r.mode == ModeToken {
		return TokenAddress
	}
	return r.keyed(nil, lower) + "@" + pseudoDomain
}

// keyed returns "r-" and the first 12 hex digits of the HMAC of s, with
// mac when it is not nil (a reused instance keyed with r.key).
func (r *Redactor) keyed(mac hash.Hash, s string) string {
	if mac == nil {
		mac = hmac.New(sha256.New, r.key)
	}
	mac.Reset()
	mac.Write([]byte(s))
	var sum [sha256.Size]byte
	var h [2 + 12]byte
	copy(h[:], "r-")
	hex.Encode(h[2:], mac.Sum(sum[:0])[:6])
	return string(h[:])
}

// hostPseudonym is the replacement host name for a lower-cased host name
// at a configured domain: still a valid name, in the .invalid TLD.
func (r *Redactor) hostPseudonym(lower string) string {
	if r.mode == ModeToken {
		return pseudoDomain
	}
	return r.keyed(nil, lower) + "." + pseudoDomain
}

// Pseudonym returns what addr is replaced with under this policy, for
// callers that record the replacement (for example in place of smtp_to).
func (r *Redactor) Pseudonym(addr string) string {
	n, ok := normalizeAddr(addr)
	if !ok {
		return TokenAddress
	}
	return r.pseudonym(strings.ToLower(n))
}

// Apply returns raw with every form of every address in addrs, in the
// policy's Addresses and at the policy's Domains replaced, and the
// X-Xarfd-Redacted header added at the top. See the package documentation
// for the forms and the guarantee. On error the returned message is nil and
// the error wraps ErrUnredactable; the caller quarantines the message.
func (r *Redactor) Apply(raw []byte, addrs []string) ([]byte, Summary, error) {
	s := newSession(r)
	defer s.release()
	for _, a := range addrs {
		if n, ok := normalizeAddr(a); ok {
			s.addTarget(n)
		}
	}
	if s.numTargets() == 0 {
		return r.addHeader(raw, s.sum), s.sum, nil
	}
	if err := walk(raw, nil, 0, discoverer{s}); err != nil {
		return nil, Summary{}, err
	}
	s.build()
	// The output is written once, after room for the header (known only
	// at the end), with some room for replacements longer than what they
	// replace: one copy of the message.
	room := r.maxHeaderLen()
	buf := make([]byte, room, room+len(raw)+len(raw)/32+256)
	buf = s.entity(buf, raw, nil, 0)
	if s.err != nil {
		return nil, Summary{}, s.err
	}
	out := buf[room:]
	if err := s.verify(out); err != nil {
		return nil, Summary{}, err
	}
	for i := range int32(s.numTargets()) {
		if !s.target(i).host {
			s.sum.addresses++
		}
	}
	h := r.header(out, s.sum)
	copy(buf[room-len(h):], h)
	return buf[room-len(h):], s.sum, nil
}

// addHeader prepends the header even when nothing was found: it records that
// this host checked the message under its policy, and it is the only change,
// so a DKIM signature of an unchanged message still verifies.
func (r *Redactor) addHeader(msg []byte, sum Summary) []byte {
	h := r.header(msg, sum)
	out := make([]byte, 0, len(h)+len(msg))
	out = append(out, h...)
	return append(out, msg...)
}

// header is the X-Xarfd-Redacted field for msg.
func (r *Redactor) header(msg []byte, sum Summary) string {
	host := r.host
	if r.domainMatch([]byte(host)) {
		// This host is itself a trap host: naming it would reveal the domain.
		host = r.hostPseudonym(strings.ToLower(host))
	}
	return HeaderName + ": " + host + "; mode=" + r.mode.String() + "; forms=" + sum.String() + eolOf(msg)
}

// maxHeaderLen bounds len(r.header(...)): every form counted, each count
// of up to 20 digits.
func (r *Redactor) maxHeaderLen() int {
	n := len(HeaderName) + len(": ") + max(len(r.host), len("r-123456789012."+pseudoDomain)) +
		len("; mode=") + len("token") + len("; forms=") + len("\r\n")
	for f := range numForms {
		n += len(f.String()) + len(":") + 20 + len(",")
	}
	return n
}
