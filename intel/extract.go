package intel

import (
	"bufio"
	"bytes"
	"errors"
	"html"
	"io"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/config"
)

// Kind is what an indicator is; the names are the API's kind parameter.
type Kind string

// Indicator kinds.
const (
	KindIP     Kind = "ip"
	KindDomain Kind = "domain"
	KindURL    Kind = "url"
	KindEmail  Kind = "email"
)

// Kinds lists every kind in a fixed order.
var Kinds = []Kind{KindIP, KindDomain, KindURL, KindEmail}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, bool) {
	k := Kind(s)
	return k, slices.Contains(Kinds, k)
}

// Indicator is one value extracted from a report.
type Indicator struct {
	Kind  Kind   `json:"kind"`
	Value string `json:"value"`
	// Where it was found: origin, mail_from, from, reply_to, dkim, url, body.
	Where string `json:"where"`
}

// Input is what one stored report offers.
type Input struct {
	// SourceIP is the report's origin.
	SourceIP netip.Addr
	// MailFrom is the envelope sender of a trap message (for an ARF
	// report the reported message's Original-Mail-From is used instead).
	MailFrom string
	// Rcpts are the envelope recipients: never extracted.
	Rcpts []string
	// Raw is the stored, redacted message: a trap's message or an ARF report.
	Raw []byte
}

// Limits of the walk over a hostile message.
const (
	maxDepth     = 8
	maxParts     = 200
	maxPartBytes = 4 << 20
	// maxTextBytes of each text part are scanned for links and
	// addresses: spam puts them near the top, and a bound keeps a
	// hostile body from holding the worker.
	maxTextBytes  = 1 << 20
	maxIndicators = 500
	maxURLBytes   = 4096
)

// Extractor extracts indicators with a configuration's exclusions.
type Extractor struct {
	kind map[string]config.Kind // channel -> kind (arf | trap)
	// never: exact lower-cased domains that must not appear, nor any of
	// their subdomains, nor their registrable parent (recipient and own
	// names: listing the parent would still point at them).
	never []string
	// allow: allowlisted domains, with their subdomains.
	allow    []string
	addrs    map[string]bool // addresses never extracted
	nets     []netip.Prefix  // own and allowed networks
	reserved []string
}

// NewExtractor builds the exclusions of cfg. It works on any
// configuration; channels that do not use intel are extracted the same
// way (xarfd parse -indicators shows what would be).
func NewExtractor(cfg *config.Config) *Extractor {
	x := &Extractor{kind: map[string]config.Kind{}, addrs: map[string]bool{}}
	addDomain := func(d string) {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d != "" {
			x.never = append(x.never, d)
		}
	}
	addAddr := func(a string) {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == "" {
			return
		}
		x.addrs[a] = true
	}
	addDomain(cfg.Hostname)
	addDomain(cfg.Sender.Domain)
	addAddr(cfg.Sender.Contact)
	addAddr(cfg.Reporter.From)
	addDomain(domainOf(cfg.Reporter.From))
	addDomain(cfg.Reporter.DKIM.Domain)
	addDomain(cfg.Intel.IPZone)
	addDomain(cfg.Intel.DomainZone)
	for i := range cfg.Channels {
		ch := &cfg.Channels[i]
		x.kind[ch.Name] = ch.Kind
		for _, a := range ch.Addresses {
			local, dom, _ := strings.Cut(a, "@")
			addDomain(dom)
			if local != "*" {
				addAddr(a)
			}
		}
		for _, d := range ch.Redact.Domains {
			addDomain(d)
		}
		for _, a := range ch.Redact.Addresses {
			addAddr(a)
			addDomain(domainOf(a))
		}
	}
	for _, d := range cfg.Intel.Allow.Domains {
		x.allow = append(x.allow, strings.TrimSuffix(strings.ToLower(d), "."))
	}
	if cfg.Intel.Allow.Builtin {
		x.allow = append(x.allow, BuiltinAllow...)
	}
	for _, p := range cfg.OwnNetworks {
		x.nets = append(x.nets, p.Prefix)
	}
	for _, p := range cfg.Intel.Allow.Networks {
		x.nets = append(x.nets, p.Prefix)
	}
	return x
}

// BuiltinAllow is the starter allowlist (intel.allow.builtin): domains of
// big shared senders whose listing would block everyone's mail, and URL
// shorteners' own hosts (the shortened link is what a spammer controls,
// not the shortener). docs/intel.md lists them.
var BuiltinAllow = []string{
	// webmail and mailbox providers
	"gmail.com", "googlemail.com", "google.com", "outlook.com", "hotmail.com", "live.com",
	"msn.com", "microsoft.com", "yahoo.com", "ymail.com", "aol.com", "icloud.com", "me.com",
	"apple.com", "gmx.net", "gmx.de", "web.de", "t-online.de", "mail.ru", "yandex.ru",
	"yandex.com", "qq.com", "163.com", "126.com", "proton.me", "protonmail.com", "zoho.com",
	"fastmail.com", "orange.fr", "free.fr", "libero.it", "comcast.net",
	// bulk-mail platforms and cloud relays shared by many senders
	"amazonses.com", "sendgrid.net", "mailchimp.com", "mcsv.net", "mandrillapp.com",
	"mailgun.org", "sparkpostmail.com", "onmicrosoft.com", "outlook.office365.com",
	// URL shorteners and link wrappers
	"bit.ly", "t.co", "tinyurl.com", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly",
	"safelinks.protection.outlook.com", "urldefense.com",
	// infrastructure every message names
	"w3.org", "schema.org", "googleapis.com", "gstatic.com", "cloudflare.com",
}

// reservedTLDs are RFC 2606 and RFC 6761 names; example.com/net/org
// are reserved second-level names.
var (
	reservedTLDs = []string{"example", "test", "invalid", "localhost", "local", "onion", "arpa", "internal", "home", "lan"}
	reserved2LD  = []string{"example.com", "example.net", "example.org"}
)

func domainOf(addr string) string {
	_, d, ok := strings.Cut(addr, "@")
	if !ok {
		return ""
	}
	return strings.ToLower(strings.Trim(d, " >."))
}

func under(name, parent string) bool {
	return name == parent || strings.HasSuffix(name, "."+parent)
}

// extraction is the state of one Extract call.
type extraction struct {
	x      *Extractor
	seen   map[string]bool
	out    []Indicator
	never  []string        // x.never plus this report's recipient domains
	rcpts  map[string]bool // this report's recipient addresses
	parts  int
	isARF  bool
	inner  bool // inside the reported message of an ARF report
	mailFr string
}

// Extract returns the indicators of one report of channel, sorted by kind
// and value. It never fails: what cannot be read yields nothing.
func (x *Extractor) Extract(channel string, in Input) []Indicator {
	e := &extraction{x: x, seen: map[string]bool{}, never: slices.Clone(x.never), rcpts: map[string]bool{}}
	for _, r := range in.Rcpts {
		e.addRcpt(r)
	}
	e.isARF = x.kind[channel] == config.KindARF || looksARF(in.Raw)
	if ip := in.SourceIP.Unmap(); e.ipOK(ip) {
		e.add(KindIP, ip.String(), "origin")
	}
	if !e.isARF {
		e.mailFr = in.MailFrom
		e.finishMailFrom()
	}
	ent, err := message.ReadWithOptions(bytes.NewReader(in.Raw), &message.ReadOptions{MaxHeaderBytes: 1 << 20})
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) || ent == nil {
		e.finishMailFrom()
		return e.sorted()
	}
	// Recipients named anywhere in the headers are excluded before
	// anything is extracted, so the order of parts does not matter.
	e.collectRcpts(in.Raw)
	if !e.isARF {
		e.headers(ent.Header)
	}
	e.walk(ent, 0)
	e.finishMailFrom()
	return e.sorted()
}

func looksARF(raw []byte) bool {
	head, _, _ := bytes.Cut(raw, []byte("\n\n"))
	if len(head) > 64<<10 {
		head = head[:64<<10]
	}
	l := bytes.ToLower(head)
	return bytes.Contains(l, []byte("multipart/report")) && bytes.Contains(l, []byte("feedback-report"))
}

// recipientFields name recipients: their addresses and domains are never
// extracted, wherever they appear.
var recipientFields = []string{"To", "Cc", "Bcc", "Delivered-To", "X-Original-To", "Envelope-To",
	"X-Envelope-To", "Original-Rcpt-To", "Original-Recipient", "Final-Recipient", "Removed-Recipient", "X-Rcpt-To", "Resent-To", "Resent-Cc"}

// addrRE finds address candidates; it has no counted repetition, which
// would make Go's linear-time matcher slow by the size of its program
// on every byte of a hostile body. email and domainOK check the rest.
var addrRE = regexp.MustCompile(`[A-Za-z0-9!#$%&'*+/=?^_{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+`)

// collectRcpts finds every header line of a recipient field, at any
// depth (the reported message of an ARF report, its feedback part), and
// excludes the addresses it names and their domains.
func (e *extraction) collectRcpts(raw []byte) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	inField := false
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if inField {
				e.rcptText(line)
			}
			continue
		}
		inField = false
		name, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range recipientFields {
			if strings.EqualFold(strings.TrimSpace(name), f) {
				inField = true
				e.rcptText(line[len(name)+1:])
				break
			}
		}
	}
}

func (e *extraction) rcptText(s string) {
	for _, a := range addrRE.FindAllString(s, -1) {
		e.addRcpt(a)
	}
}

func (e *extraction) addRcpt(a string) {
	a = strings.ToLower(strings.Trim(a, " <>"))
	e.rcpts[a] = true
	if d := domainOf(a); d != "" && !slices.Contains(e.never, d) {
		e.never = append(e.never, d)
	}
}

func (e *extraction) headers(h message.Header) {
	if d := domainOf(addrSpec(h.Get("From"))); d != "" {
		e.domain(d, "from")
	}
	for _, a := range addrList(h.Get("Reply-To")) {
		e.email(a, "reply_to")
		e.domain(domainOf(a), "reply_to")
	}
	for _, sig := range h.Values("DKIM-Signature") {
		if d := dkimDomain(sig); d != "" {
			e.domain(d, "dkim")
		}
	}
}

func addrSpec(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return a.Address
	}
	if m := addrRE.FindString(s); m != "" {
		return m
	}
	return ""
}

func addrList(s string) []string {
	if as, err := mail.ParseAddressList(s); err == nil {
		var out []string
		for _, a := range as {
			out = append(out, a.Address)
		}
		return out
	}
	return addrRE.FindAllString(s, 8)
}

func dkimDomain(sig string) string {
	for _, tag := range strings.Split(sig, ";") {
		k, v, ok := strings.Cut(tag, "=")
		if ok && strings.TrimSpace(k) == "d" {
			return strings.ToLower(strings.Join(strings.Fields(v), ""))
		}
	}
	return ""
}

func (e *extraction) walk(ent *message.Entity, depth int) {
	if depth > maxDepth || e.parts >= maxParts {
		return
	}
	e.parts++
	mt, _, _ := ent.Header.ContentType()
	if mt == "" {
		mt = "text/plain"
	}
	if mr := ent.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) || p == nil && err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return
			}
			if p == nil {
				return
			}
			e.walk(p, depth+1)
			if e.parts >= maxParts {
				return
			}
		}
	}
	body, _ := io.ReadAll(io.LimitReader(ent.Body, maxPartBytes))
	switch {
	case mt == "message/rfc822" || mt == "message/global":
		inner, err := message.Read(bytes.NewReader(body))
		if inner == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return
		}
		was := e.inner
		e.inner = true
		e.headers(inner.Header)
		e.walk(inner, depth+1)
		e.inner = was
	case mt == "text/rfc822-headers":
		if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(body, '\n', '\n')))); err == nil {
			e.inner = true
			e.headers(message.Header{Header: h})
		}
	case mt == "message/feedback-report":
		if e.isARF && e.mailFr == "" {
			if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(body, '\n', '\n')))); err == nil {
				e.mailFr = strings.Trim(h.Get("Original-Mail-From"), " <>")
			}
		}
	case strings.HasPrefix(mt, "text/"):
		// The first part of an ARF report is the feedback provider's
		// own text, not the spam.
		if e.isARF && !e.inner {
			return
		}
		if len(body) > maxTextBytes {
			body = body[:maxTextBytes]
		}
		if mt == "text/html" {
			e.html(string(body))
		} else {
			e.text(string(body))
		}
	}
}

var (
	urlRE  = regexp.MustCompile(`(?i)\b(?:https?://|www\.)[^\s<>"'\x60{}|\\^\[\]]+`)
	hrefRE = regexp.MustCompile(`(?i)\b(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))`)
)

// findAddrs returns up to max address candidates: around each '@', the
// local-part characters before it (at most 64) and the domain characters
// after it (at most 253). One pass, unlike a regexp over a hostile body.
func findAddrs(s string, max int) []string {
	var out []string
	for i := 0; i < len(s) && len(out) < max; i++ {
		if s[i] != '@' {
			continue
		}
		l := i
		for l > 0 && i-l < 64 && isLocalChar(s[l-1]) {
			l--
		}
		r := i + 1
		for r < len(s) && r-i <= 253 && isDomainChar(s[r]) {
			r++
		}
		local, dom := strings.TrimLeft(s[l:i], "."), strings.Trim(s[i+1:r], ".-")
		if local != "" && strings.Contains(dom, ".") {
			out = append(out, local+"@"+dom)
		}
		i = r - 1
	}
	return out
}

func isDomainChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-'
}

func isLocalChar(c byte) bool {
	return isDomainChar(c) || strings.IndexByte("!#$%&'*+/=?^_{|}~", c) >= 0
}

// stripTags replaces every tag by a space, in one pass.
func stripTags(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '<':
			in = true
			b.WriteByte(' ')
		case c == '>' && in:
			in = false
		case !in:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// html takes every href and src (after decoding entities, which spammers use to
// hide links from naive scanners) and then the text without tags.
func (e *extraction) html(s string) {
	for _, m := range hrefRE.FindAllStringSubmatch(s, 200) {
		v := m[1] + m[2] + m[3]
		v = strings.TrimSpace(html.UnescapeString(v))
		if strings.HasPrefix(strings.ToLower(v), "mailto:") {
			addr := strings.TrimPrefix(v[7:], "//")
			addr, _, _ = strings.Cut(addr, "?")
			if u, err := url.PathUnescape(addr); err == nil {
				addr = u
			}
			e.email(addr, "body")
			continue
		}
		e.url(v)
	}
	e.text(html.UnescapeString(stripTags(s)))
}

func (e *extraction) text(s string) {
	for _, u := range urlRE.FindAllString(s, 500) {
		e.url(strings.TrimRight(u, ".,;:!?)'\""))
	}
	// A URL's userinfo is no address: look for addresses outside URLs.
	s = urlRE.ReplaceAllString(s, " ")
	for _, a := range findAddrs(s, 500) {
		e.email(a, "body")
	}
}

// url normalises a link and adds it with its registrable domain. The
// query and fragment are dropped: they often carry a per-recipient token,
// and a listed URL with it would tell the sender which address hit a
// trap.
func (e *extraction) url(raw string) {
	if strings.HasPrefix(strings.ToLower(raw), "www.") {
		raw = "http://" + raw
	}
	if len(raw) > maxURLBytes {
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if !e.ipOK(a.Unmap()) {
			return
		}
		host = a.Unmap().String()
		if a.Is6() && !a.Is4In6() {
			host = "[" + host + "]"
		}
	} else {
		ascii, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return
		}
		host = ascii
		reg, ok := e.domainOK(host)
		if !ok {
			return
		}
		e.add(KindDomain, reg, "url")
	}
	port := u.Port()
	if port == "80" && u.Scheme == "http" || port == "443" && u.Scheme == "https" {
		port = ""
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if e.leaks(host) {
		return
	}
	if e.leaks(path) {
		path = "/"
	}
	e.add(KindURL, u.Scheme+"://"+host+path, "url")
}

// leaks reports whether s carries a recipient datum or a placeholder.
func (e *extraction) leaks(s string) bool {
	l := strings.ToLower(s)
	if strings.Contains(l, "redacted") {
		return true
	}
	if dec, err := url.PathUnescape(l); err == nil {
		l = dec
	}
	for r := range e.rcpts {
		if strings.Contains(l, r) {
			return true
		}
	}
	for a := range e.x.addrs {
		if strings.Contains(l, a) {
			return true
		}
	}
	for _, d := range e.never {
		if strings.Contains(l, d) {
			return true
		}
	}
	return false
}

func (e *extraction) email(a, where string) {
	a = strings.ToLower(strings.Trim(a, " <>."))
	local, dom, ok := strings.Cut(a, "@")
	if !ok || local == "" || e.rcpts[a] || e.x.addrs[a] {
		return
	}
	if _, err := mail.ParseAddress("<" + a + ">"); err != nil {
		return
	}
	if _, ok := e.domainOK(dom); !ok {
		return
	}
	e.add(KindEmail, a, where)
}

func (e *extraction) domain(d, where string) {
	if reg, ok := e.domainOK(d); ok {
		e.add(KindDomain, reg, where)
	}
}

// domainOK returns the registrable domain of host, or false when host is
// not under a known public suffix or is excluded.
func (e *extraction) domainOK(host string) (string, bool) {
	host = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if host == "" || len(host) > 253 || strings.ContainsAny(host, " _/\\@") {
		return "", false
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if slices.Contains(reservedTLDs, last) {
		return "", false
	}
	suffix, icann := publicsuffix.PublicSuffix(host)
	if !icann && !strings.Contains(suffix, ".") {
		return "", false // no rule matched: not a real TLD
	}
	reg, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return "", false
	}
	if slices.Contains(reserved2LD, reg) {
		return "", false
	}
	for _, n := range e.never {
		if under(host, n) || under(n, reg) {
			return "", false
		}
	}
	for _, a := range e.x.allow {
		if under(host, a) || under(reg, a) {
			return "", false
		}
	}
	return reg, true
}

func (e *extraction) ipOK(a netip.Addr) bool {
	if !arf.IsPublic(a) {
		return false
	}
	for _, p := range e.x.nets {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

func (e *extraction) finishMailFrom() {
	if d := domainOf(e.mailFr); d != "" {
		e.domain(d, "mail_from")
	}
}

func (e *extraction) add(k Kind, v, where string) {
	key := string(k) + "\x00" + v
	if e.seen[key] || len(e.out) >= maxIndicators {
		return
	}
	e.seen[key] = true
	e.out = append(e.out, Indicator{Kind: k, Value: v, Where: where})
}

func (e *extraction) sorted() []Indicator {
	if e.out == nil {
		return []Indicator{}
	}
	slices.SortFunc(e.out, func(a, b Indicator) int {
		if c := slices.Index(Kinds, a.Kind) - slices.Index(Kinds, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return e.out
}
