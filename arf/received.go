package arf

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Received is one parsed Received header field.
type Received struct {
	Raw string `json:"raw"`
	// FromHost is the name after "from" as the receiver wrote it: the HELO
	// name for Postfix, Sendmail and Exchange, the reverse-DNS name or an
	// address literal for Exim, often "unknown" or a fake for qmail.
	FromHost string `json:"from_host,omitempty"`
	// HELO is the name the client gave (explicit "helo=", "(HELO x)" or,
	// failing those, FromHost).
	HELO string `json:"helo,omitempty"`
	// RDNS is the reverse-DNS name the receiver recorded beside the address.
	RDNS string `json:"rdns,omitempty"`
	// IP is the connecting client's address; invalid when none was written.
	IP           netip.Addr `json:"ip,omitzero"`
	Port         int        `json:"port,omitempty"`
	ByHost       string     `json:"by_host,omitempty"`
	ByIP         netip.Addr `json:"by_ip,omitzero"`
	With         string     `json:"with,omitempty"`
	ID           string     `json:"id,omitempty"`
	For          string     `json:"for,omitempty"` // address of the for clause, without brackets
	EnvelopeFrom string     `json:"envelope_from,omitempty"`
	DateRaw      string     `json:"date_raw,omitempty"`
	Date         time.Time  `json:"date,omitzero"`
}

// ErrNotReceived is returned by ParseReceived when the value has neither a
// from nor a by clause.
const ErrNotReceived = arfError("arf: not a Received header: no from or by clause")

type rtok struct {
	s       string
	comment bool // parenthesised comment, parens removed
	start   int
}

// tokenizeReceived splits at white space into words and parenthesised
// comments (nested, with backslash escapes); brackets are part of words.
func tokenizeReceived(v string) []rtok {
	toks := make([]rtok, 0, 24)
	i := 0
	for i < len(v) {
		c := v[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			depth, j := 0, i
			for ; j < len(v); j++ {
				if v[j] == '\\' {
					j++
					continue
				}
				if v[j] == '(' {
					depth++
				} else if v[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			end := min(j, len(v))
			toks = append(toks, rtok{s: v[i+1 : end], comment: true, start: i})
			i = end + 1
		case c == ';':
			toks = append(toks, rtok{s: ";", start: i})
			i++
		default:
			j := i
			inBracket := false
			for j < len(v) {
				d := v[j]
				if d == '[' {
					inBracket = true
				} else if d == ']' {
					inBracket = false
				} else if !inBracket && (d == ' ' || d == '\t' || d == '\n' || d == '\r' || d == '(' || d == ';') {
					break
				}
				j++
			}
			toks = append(toks, rtok{s: v[i:j], start: i})
			i = j
		}
	}
	return toks
}

var receivedKeywords = map[string]bool{"from": true, "by": true, "via": true, "with": true, "id": true, "for": true}

// ParseReceived parses one Received header value. It knows the shapes
// Postfix, Sendmail, Exim, qmail, Exchange/Outlook and Gmail write,
// including IPv6 literals with and without the "IPv6:" prefix, ports
// attached to addresses and "user@host@ip" forms. A value that is not
// entirely understood still yields whatever was recognised.
func ParseReceived(value string) (Received, error) {
	r := Received{Raw: value}
	toks := tokenizeReceived(value)
	// The date follows the last top-level semicolon.
	last := -1
	for i, t := range toks {
		if !t.comment && t.s == ";" {
			last = i
		}
	}
	clauseEnd := len(toks)
	if last >= 0 {
		rest := strings.TrimSpace(value[toks[last].start+1:])
		if d, _, _, ok := ParseDate(rest); ok {
			r.DateRaw, r.Date = rest, d
			clauseEnd = last
		} else if rest != "" {
			r.DateRaw = rest
			clauseEnd = last
		}
	}
	clauses := map[string][]rtok{}
	var cur string
	for _, t := range toks[:clauseEnd] {
		if !t.comment && t.s == ";" {
			cur = ""
			continue
		}
		if !t.comment && receivedKeywords[strings.ToLower(t.s)] {
			k := strings.ToLower(t.s)
			if _, seen := clauses[k]; !seen {
				cur = k
				clauses[k] = []rtok{}
				continue
			}
		}
		if cur != "" {
			clauses[cur] = append(clauses[cur], t)
		}
		if t.comment {
			if v, ok := commentValue(t.s, "envelope-from"); ok && r.EnvelopeFrom == "" {
				r.EnvelopeFrom = strings.Trim(v, "<>,")
			}
		}
	}
	from, hasFrom := clauses["from"]
	by, hasBy := clauses["by"]
	if !hasFrom && !hasBy {
		return r, ErrNotReceived
	}
	if hasFrom {
		r.parseFrom(from)
	}
	if hasBy {
		for _, t := range by {
			if !t.comment && r.ByHost == "" {
				r.ByHost = strings.TrimSuffix(t.s, ".")
				if a, _, _, _ := ParseIP(t.s); a.IsValid() {
					r.ByIP = a
				}
			} else if t.comment && !r.ByIP.IsValid() {
				r.ByIP, _, _, _ = commentAddr(t.s)
			}
		}
	}
	r.With = firstWord(clauses["with"])
	r.ID = strings.TrimSuffix(firstWord(clauses["id"]), ";")
	if f := firstWord(clauses["for"]); f != "" {
		r.For = strings.TrimSuffix(strings.Trim(f, "<>;,"), ">")
	}
	return r, nil
}

func firstWord(ts []rtok) string {
	for _, t := range ts {
		if !t.comment {
			return t.s
		}
	}
	return ""
}

func (r *Received) parseFrom(ts []rtok) {
	var literal netip.Addr
	var literalPort int
	for _, t := range ts {
		if t.comment {
			if !r.IP.IsValid() {
				if a, port, rdns, ok := commentAddr(t.s); ok {
					r.IP, r.Port = a, port
					if rdns != "" && r.RDNS == "" {
						r.RDNS = rdns
					}
				}
			}
			if h, ok := commentValue(t.s, "helo"); ok && r.HELO == "" {
				r.HELO = h
			}
			if p, ok := commentValue(t.s, "port"); ok && r.Port == 0 {
				r.Port = parsePort(strings.Trim(p, ",;"))
			}
			continue
		}
		if r.FromHost == "" {
			r.FromHost = strings.TrimSuffix(t.s, ".")
			if a, port, _, _ := ParseIP(t.s); a.IsValid() {
				literal, literalPort = a, port
			} else if strings.HasPrefix(t.s, "[") {
				// Exim "[192.0.2.1]:25"
				if i := strings.LastIndex(t.s, "]:"); i > 0 {
					if a, _, _, _ := ParseIP(t.s[:i+1]); a.IsValid() {
						literal = a
						literalPort = parsePort(t.s[i+2:])
					}
				}
			}
		}
	}
	// The address the receiver saw (in the comment) beats the literal the
	// client announced, except that Exim writes the peer as the literal.
	if !r.IP.IsValid() && literal.IsValid() {
		r.IP = literal
		if literalPort != 0 {
			r.Port = literalPort
		}
	}
	if r.HELO == "" && r.FromHost != "" && !strings.EqualFold(r.FromHost, "unknown") {
		r.HELO = r.FromHost
	}
}

// commentValue finds "key=value" or "key value" (qmail's "HELO x") in a
// comment.
func commentValue(c, key string) (string, bool) {
	f := strings.Fields(c)
	for i, w := range f {
		lw := strings.ToLower(w)
		if strings.HasPrefix(lw, key+"=") {
			return strings.TrimRight(w[len(key)+1:], ",;)"), true
		}
		if key == "helo" && (lw == "helo" || lw == "ehlo") && i+1 < len(f) {
			return strings.TrimRight(f[i+1], ",;)"), true
		}
		if key == "envelope-from" && lw == "envelope-from" && i+1 < len(f) {
			return strings.TrimRight(f[i+1], ",;)"), true
		}
	}
	return "", false
}

// commentAddr finds the client address in a from-clause comment: a
// bracketed literal ("host [ip]", "[ip]:port", "[ip:port]"), a bare address
// (qmail, Exchange) or "user@host@ip" (qmail SMTP AUTH). rdns is the word
// before a bracketed literal, unless it is "unknown".
func commentAddr(c string) (a netip.Addr, port int, rdns string, ok bool) {
	f := strings.Fields(c)
	for i, w := range f {
		if !strings.HasPrefix(w, "[") {
			continue
		}
		end := strings.IndexByte(w, ']')
		if end < 0 {
			continue
		}
		a, p, _, _ := ParseIP(w[1:end])
		if !a.IsValid() {
			continue
		}
		if rest := w[end+1:]; strings.HasPrefix(rest, ":") {
			p = parsePort(strings.TrimRight(rest[1:], ",;"))
		}
		if i > 0 {
			h := f[i-1]
			if at := strings.LastIndexByte(h, '@'); at >= 0 {
				h = h[at+1:]
			}
			h = strings.TrimSuffix(h, ".")
			if !strings.EqualFold(h, "unknown") && strings.Contains(h, ".") && !strings.Contains(h, "=") {
				rdns = h
			}
		}
		return a, p, rdns, true
	}
	for _, w := range f {
		w = strings.TrimRight(w, ",;")
		if at := strings.LastIndexByte(w, '@'); at >= 0 {
			w = w[at+1:]
		}
		if a, p, _, _ := ParseIP(w); a.IsValid() {
			return a, p, "", true
		}
	}
	return netip.Addr{}, 0, "", false
}

// ReceivedChain parses every Received field of h, most recent first (header
// order). Fields that are not Received headers at all are skipped.
func ReceivedChain(h Header) []Received {
	var out []Received
	for _, f := range h {
		if !strings.EqualFold(f.Name, "Received") {
			continue
		}
		if r, err := ParseReceived(f.Value); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// FirstUntrusted walks a chain from the most recent hop and returns the
// first hop whose client address is valid and not trusted (trusted hops are
// the receiver's own relays). Spam-trap ingestion uses it to find the origin
// of forwarded mail.
func FirstUntrusted(chain []Received, trusted func(Received) bool) (Received, bool) {
	for _, r := range chain {
		if !r.IP.IsValid() {
			continue
		}
		if trusted != nil && trusted(r) {
			continue
		}
		return r, true
	}
	return Received{}, false
}

// parsePort returns 0 for anything that is not a TCP port.
func parsePort(s string) int {
	if !isDigits(s) || len(s) > 5 {
		return 0
	}
	n, _ := strconv.Atoi(s)
	if n > 65535 {
		return 0
	}
	return n
}
