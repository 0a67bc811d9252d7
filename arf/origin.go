package arf

import (
	"net/mail"
	"regexp"
	"strings"
)

// origin sets Report.Origin: Source-IP when it is an address, otherwise
// the embedded message's Received chain, otherwise the Subject.
func (p *parser) origin() {
	r := p.r
	if r.Origin != nil {
		return
	}
	if r.SourceIP != nil && r.SourceIP.Addr.IsValid() {
		r.Origin = &Origin{IP: r.SourceIP.Addr, Port: r.SourcePort, Method: MethodSourceIP}
		return
	}
	if r.Embedded != nil {
		own := p.ownDomains()
		hop, ok := FirstUntrusted(r.Embedded.Received, func(h Received) bool {
			if !IsPublic(h.IP) {
				return true
			}
			name := h.RDNS
			if name == "" {
				name = h.FromHost
			}
			return own[registrable(name)]
		})
		if ok {
			r.Origin = &Origin{IP: hop.IP, Port: hop.Port, Inferred: true, Method: MethodReceivedChain}
			return
		}
	}
	if a, ok := ipFromSubject(p.root.header.Decoded("Subject")); ok && IsPublic(a) {
		r.Origin = &Origin{IP: a, Inferred: true, Method: MethodSubject}
	}
}

// ownDomains guesses the reporting provider's domains, whose relays are
// skipped when walking the Received chain: the report's From domain, the
// Reporting-MTA, and whoever received the reported message last (the
// topmost Received "by").
func (p *parser) ownDomains() map[string]bool {
	own := map[string]bool{}
	if from, ok := p.root.header.Get("From"); ok {
		for _, a := range addressesIn(from) {
			if _, d, ok := strings.Cut(a, "@"); ok {
				own[registrable(d)] = true
			}
		}
	}
	if m := p.r.ReportingMTA; m != "" {
		if _, host, ok := strings.Cut(m, ";"); ok {
			m = host
		}
		own[registrable(strings.TrimSpace(m))] = true
	}
	if e := p.r.Embedded; e != nil && len(e.Received) > 0 && e.Received[0].ByHost != "" {
		own[registrable(e.Received[0].ByHost)] = true
	}
	delete(own, "")
	return own
}

// secondLevel are labels under two-letter country codes that act as
// public suffixes often enough to matter (co.uk, ne.jp, com.au, ...). This
// is a heuristic, not the Public Suffix List.
var secondLevel = map[string]bool{
	"co": true, "com": true, "net": true, "org": true, "ac": true, "gov": true, "edu": true,
	"ne": true, "or": true, "go": true, "ed": true, "ltd": true, "plc": true, "gr": true,
}

func registrable(host string) string {
	host = strings.ToLower(strings.Trim(strings.TrimSpace(host), ".[]"))
	if host == "" || strings.ContainsAny(host, ":@ ") {
		return ""
	}
	labels := strings.Split(host, ".")
	n := len(labels)
	if n < 2 {
		return host
	}
	if n >= 3 && len(labels[n-1]) == 2 && secondLevel[labels[n-2]] {
		return strings.Join(labels[n-3:], ".")
	}
	return labels[n-2] + "." + labels[n-1]
}

var addrRe = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_` + "`" + `{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*`)

// addressesIn finds every addr-spec in a header value. A regular
// expression rather than net/mail because redaction must also catch
// addresses in display names, "rfc822;" prefixes and broken lists.
func addressesIn(v string) []string {
	if a, err := mail.ParseAddress(v); err == nil && !strings.Contains(a.Name, "@") {
		return []string{a.Address}
	}
	return addrRe.FindAllString(decodeWords(v), -1)
}

// recipientHeaders name the embedded message's fields that carry a
// recipient.
var recipientHeaders = []string{
	"To", "Cc", "Bcc", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To",
	"X-HmXmrOriginalRecipient", "X-Rcpt-To", "X-Original-Recipient", "Original-Recipient",
	"X-Apparently-To", "Resent-To", "Resent-Cc", "X-Forwarded-To",
}

// RecipientAddresses returns every recipient address the report names:
// Original-Rcpt-To, Removal-Recipient, the embedded message's recipient
// fields and Received "for" clauses, and JMRP's X-HmXmrOriginalRecipient.
// Duplicates (case-insensitive) are removed; order is first appearance.
// Redaction relies on it, so it errs on the side of including.
func (r *Report) RecipientAddresses() []string {
	var out []string
	seen := map[string]bool{}
	add := func(vals ...string) {
		for _, v := range vals {
			for _, a := range addressesIn(v) {
				a = strings.TrimRight(a, ".")
				k := strings.ToLower(a)
				if !seen[k] {
					seen[k] = true
					out = append(out, a)
				}
			}
		}
	}
	add(r.OriginalRcptTo...)
	add(r.RemovalRecipient...)
	if v, _ := r.InferredValues("original-rcpt-to"); v != nil {
		add(v...)
	}
	if e := r.Embedded; e != nil {
		for _, name := range recipientHeaders {
			add(e.Header.Values(name)...)
		}
		for _, h := range e.Received {
			add(h.For)
		}
	}
	return out
}
