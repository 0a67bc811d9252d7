package redact

import (
	"mime"
	"net/mail"
	"regexp"
	"slices"
	"strings"

	"github.com/emersion/go-message/charset"

	"github.com/xarfd/xarfd/internal/header"
)

// recipientFields are the header fields that name a recipient, at any level
// of the message; the last two occur in ARF feedback-report parts.
var recipientFields = map[string]bool{
	"to": true, "cc": true, "bcc": true,
	"resent-to": true, "resent-cc": true, "resent-bcc": true,
	"delivered-to": true, "x-original-to": true,
	"envelope-to": true, "x-envelope-to": true,
	"original-recipient": true, "final-recipient": true,
	"original-rcpt-to": true, "removal-recipient": true,
}

var receivedForRe = regexp.MustCompile(`(?i)\bfor\s+<?\s*([^\s<>;,()]+@[^\s<>;,()]+?)\s*>?\s*(?:[;,()]|$|\s)`)

// receivedFor calls fn with the address of every match of receivedForRe in
// v, as FindAllStringSubmatch would, but starts the regexp only where a
// match can start: at a "for" (any case) that begins a word. The backtracking
// matcher was a twentieth of the stage's CPU time walking the rest of the
// field. A match in v[k:] is one in v: \b at k is checked here, and the
// pattern looks at nothing else before its start.
func receivedFor(v string, fn func(addr string)) {
	for pos := 0; ; {
		k := forWord(v, pos)
		if k < 0 {
			return
		}
		m := receivedForRe.FindStringSubmatchIndex(v[k:])
		if m == nil {
			return
		}
		fn(v[k+m[2] : k+m[3]])
		pos = k + m[1]
	}
}

// forWord returns the index of the first "for", in any case, at or after
// pos that no ASCII word byte precedes, or -1.
func forWord(v string, pos int) int {
	for i := pos; i+3 <= len(v); i++ {
		if v[i]|0x20 == 'f' && v[i+1]|0x20 == 'o' && v[i+2]|0x20 == 'r' &&
			(i == 0 || !isRegexpWord(v[i-1])) {
			return i
		}
	}
	return -1
}

// isRegexpWord is \w of package regexp, what \b tests.
func isRegexpWord(c byte) bool { return isAlnum(c) || c == '_' }

type recipientCollector struct {
	seen map[string]bool
	list []string
}

func (c *recipientCollector) add(a string) {
	n, ok := normalizeAddr(a)
	if !ok {
		return
	}
	l := strings.ToLower(n)
	if c.seen[l] {
		return
	}
	c.seen[l] = true
	c.list = append(c.list, n)
}

func (c *recipientCollector) field(_ []int, name, value []byte) error {
	n := strings.ToLower(string(name))
	if n == "received" {
		receivedFor(header.Unfold(value), c.add)
		return nil
	}
	if !recipientFields[n] {
		return nil
	}
	v := strings.TrimSpace(header.Unfold(value))
	// DSN-style "rfc822; addr" in feedback and delivery reports.
	if t, a, ok := strings.Cut(v, ";"); ok && !strings.ContainsAny(t, "@<\"") {
		v = strings.TrimSpace(a)
	}
	dec := v
	if d, err := (&mime.WordDecoder{CharsetReader: charset.Reader}).DecodeHeader(v); err == nil {
		dec = d
	}
	if list, err := mail.ParseAddressList(dec); err == nil {
		for _, a := range list {
			c.add(a.Address)
		}
	}
	// Also every address-shaped token: a field mail cannot parse still
	// names its recipient.
	for _, t := range [...]string{v, dec} {
		atAddrs([]byte(t), func(a, _ []byte) {
			c.add(strings.TrimLeft(string(a), "=/?&'|!#$^`{}~*%"))
		})
	}
	return nil
}

func (c *recipientCollector) text([]int, []byte, bool) error { return nil }

// MessageRecipients returns the addresses raw names as its recipients: To,
// Cc, Bcc, Resent-*, Delivered-To, X-Original-To, Envelope-To and
// X-Envelope-To fields and Received "for" clauses at every level (also in
// message/rfc822 and text/rfc822-headers parts), and the Original-Rcpt-To
// and Removal-Recipient fields of ARF feedback-report parts. It never fails;
// what it cannot parse contributes what address-shaped tokens it holds.
// Spellings are as found, one per lower-cased address, in order of
// appearance.
func MessageRecipients(raw []byte) []string {
	c := &recipientCollector{seen: map[string]bool{}}
	_ = walk(raw, nil, 0, c) // too deep: keep what was found so far
	return slices.Clip(c.list)
}
