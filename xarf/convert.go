package xarf

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/internal/header"
)

// Errors Convert returns. Each is wrapped with the details; test with
// errors.Is. None of them carries an address.
var (
	// ErrNoOrigin: no origin address could be established (no Source-IP,
	// no usable Received hop, no SMTP peer). The caller quarantines.
	ErrNoOrigin = errors.New("xarf: no origin address")
	// ErrNotReport: FromARF was given a message arf classified as not a
	// report (bounce, auto-reply, plain mail).
	ErrNotReport = errors.New("xarf: not a feedback report")
	// ErrNotAbuse: the report says the message is not abuse (Feedback-Type
	// not-spam, opt-out, opt-out-list, miscategorized); reporting it as spam
	// would misstate it.
	ErrNotAbuse = errors.New("xarf: feedback report does not allege abuse")
	// ErrInput: the caller's Input is unusable (no report id, no contact,
	// no message).
	ErrInput = errors.New("xarf: invalid input")
)

// Input is what the caller knows beyond the message itself.
type Input struct {
	// ReportID becomes report_id; a UUID chosen by the caller.
	ReportID string
	// Received is when this installation accepted the message. It is the
	// timestamp when the message states no arrival date.
	Received time.Time
	// Reporter is the channel's owner (XARF "reporter"), Sender this
	// installation (XARF "sender").
	Reporter, Sender Contact
	// Envelope is the SMTP transaction; nil when there was none (HTTP
	// submission, offline parse): a trap's origin then comes from the
	// Received chain.
	Envelope *Envelope
	// Trusted reports whether an address is one of the channel's trusted
	// relays. Loopback addresses are always trusted. May be nil.
	Trusted func(netip.Addr) bool
	// RecipientsRedacted: the channel redacts recipients, so smtp_to is
	// omitted and the description says so.
	RecipientsRedacted bool
	// ListRedacted: the channel redacts the addresses and domains on its
	// list (redact.addresses, redact.domains) but not every recipient;
	// the description says that other recipients appear as received.
	ListRedacted bool
	// Pseudonyms: redaction wrote keyed pseudonyms (mode hmac), not the
	// fixed placeholder.
	Pseudonyms bool
	// Recipient is the address to report as smtp_to when recipients are
	// not redacted (chosen by the caller; this package never looks for
	// recipients itself). Ignored when RecipientsRedacted.
	Recipient string
	// Message is the message as it will be stored: already redacted for a
	// redacting channel. It is the evidence and the only source of every
	// text field (subject, message id, sender name, ...).
	Message []byte
}

// Envelope is the SMTP transaction the message arrived in.
type Envelope struct {
	// Peer is the connecting client; Port 0 when unknown.
	Peer netip.AddrPort
	// Relayed: the peer handed on mail it received from elsewhere (a
	// trusted relay or forwarder), so the origin is in the Received chain.
	// Also assumed when Input.Trusted(Peer.Addr()) is true or Peer is
	// invalid.
	Relayed bool
	// MailFrom is the MAIL FROM reverse-path without angle brackets; ""
	// is the null sender <>.
	MailFrom string
}

// origin is where a report says the abuse came from, and how it was found.
type origin struct {
	ip       netip.Addr
	port     int
	method   string // tag predicate: source-ip, smtp-peer, received-chain, ...
	inferred bool
	how      string // for the description
	date     time.Time
	envFrom  string // envelope-from recorded by the hop's receiver
}

// build collects a report and the notes for its description.
type build struct {
	r     *Report
	notes []string
	tags  []string
	// from says why smtp_from is missing: "null", "unknown", "redacted",
	// "invalid"; "" when it is set.
	from string
}

func (b *build) tag(ns, pred string) {
	t := ns + ":" + tagWord(pred)
	if len(b.tags) < maxTags && !containsString(b.tags, t) {
		b.tags = append(b.tags, t)
	}
}

func (b *build) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tagWord turns s into a tag predicate: lower case, runs of anything but
// [a-z0-9_+-] become '-', starting with a letter or digit.
func tagWord(s string) string {
	var sb strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '-'
		if !ok {
			c = '-'
		}
		if c == '-' && (dash || sb.Len() == 0) {
			continue
		}
		dash = c == '-'
		sb.WriteRune(c)
		if sb.Len() >= 40 {
			break
		}
	}
	out := strings.TrimRight(sb.String(), "-")
	if out == "" {
		return "unknown"
	}
	return out
}

func (in *Input) check() error {
	if !isUUID(in.ReportID) {
		return fmt.Errorf("%w: report id is not a UUID", ErrInput)
	}
	for _, c := range []struct {
		name string
		c    Contact
	}{{"reporter", in.Reporter}, {"sender", in.Sender}} {
		if c.c.Org == "" || utf8.RuneCountInString(c.c.Org) > 200 || !validEmail(c.c.Contact) || !validHostname(c.c.Domain) {
			return fmt.Errorf("%w: %s needs org (at most 200 characters), a contact address and a host name as domain", ErrInput, c.name)
		}
	}
	if len(in.Message) == 0 {
		return fmt.Errorf("%w: empty message", ErrInput)
	}
	if in.Received.IsZero() {
		return fmt.Errorf("%w: received time missing", ErrInput)
	}
	return nil
}

func (in *Input) trusted(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || (in.Trusted != nil && in.Trusted(a))
}

func newBuild(in *Input, source string) *build {
	rep, snd := in.Reporter, in.Sender
	return &build{r: &Report{
		XARFVersion:    Version,
		ReportID:       strings.ToLower(in.ReportID),
		Reporter:       &rep,
		Sender:         &snd,
		Category:       CategoryMessaging,
		Type:           TypeSpam,
		EvidenceSource: source,
	}}
}

// FromTrap converts a spam-trap hit. The origin is the SMTP peer for direct
// delivery, otherwise the first hop of the message's Received chain whose
// client is not a trusted relay; smtp_from is the envelope sender.
func FromTrap(in Input) (*Report, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	// Only the header matters for a trap hit; arf reads it as leniently as
	// a report's (line endings, BOM, folding) without walking the body.
	h, err := arf.ParseHeader(in.Message)
	if err != nil {
		return nil, fmt.Errorf("reading trap message: %w", err)
	}
	// The origin first: a hit without one (our own relays only, no
	// Received hop) is quarantined, and nothing need be built for it.
	o, err := trapOrigin(&in, h)
	if err != nil {
		return nil, err
	}
	b := newBuild(&in, SourceSpamtrap)
	b.tag("channel", "spamtrap")
	b.note("Message delivered to a spam trap (an address that never asked for mail).")
	b.setOrigin(o, in.Received)

	// Envelope sender: the MAIL FROM of the delivery to us when the peer
	// was the origin; for relayed mail the envelope-from the relay recorded
	// for the origin's transaction, else the relay's MAIL FROM (relays
	// normally keep it); without an SMTP transaction the Return-Path the
	// final delivery recorded.
	switch env := in.Envelope; {
	case o.method == "smtp-peer":
		b.setFrom(env.MailFrom, true, "")
	case o.envFrom != "":
		b.setFrom(o.envFrom, true, "received-envelope-from")
	case env != nil:
		b.setFrom(env.MailFrom, true, "relay-mail-from")
	default:
		if rp, ok := h.Get("Return-Path"); ok {
			b.setFrom(rp, true, "return-path")
		} else {
			b.setFrom("", false, "")
		}
	}
	b.headerFields(h)
	conf := 0.95 // the peer itself delivered to a trap
	if o.method != "smtp-peer" {
		conf = 0.9 // read from headers our trusted relays wrote
	}
	b.finish(&in, conf, o)
	return b.r, nil
}

// trapOrigin finds where a trap message came from.
func trapOrigin(in *Input, h arf.Header) (origin, error) {
	if env := in.Envelope; env != nil && env.Peer.Addr().IsValid() && !env.Relayed && !in.trusted(env.Peer.Addr()) {
		return origin{ip: env.Peer.Addr().Unmap(), port: int(env.Peer.Port()), method: "smtp-peer",
			how: "the SMTP client that delivered it directly"}, nil
	}
	chain := arf.ReceivedChain(h)
	for i, hop := range chain {
		if !hop.IP.IsValid() {
			if hop.FromHost == "" {
				continue // a local hand-off inside a relay ("by host with local")
			}
			// A hop from elsewhere without a client address: the headers
			// below it were written by hosts we do not trust.
			return origin{}, fmt.Errorf("%w: Received header %d (from %s) records no client address", ErrNoOrigin, i+1, reasonText(hop.FromHost))
		}
		if in.trusted(hop.IP) {
			continue
		}
		o := origin{ip: hop.IP.Unmap(), port: hop.Port, method: "received-chain", inferred: in.Envelope == nil,
			how:  fmt.Sprintf("the first Received hop outside the trusted relays (header %d of %d)", i+1, len(chain)),
			date: hop.Date, envFrom: strings.Trim(hop.EnvelopeFrom, "<> ")}
		if in.Envelope == nil {
			o.how = fmt.Sprintf("the most recent Received hop (header %d of %d; no SMTP envelope was given, so the message counts as forwarded)", i+1, len(chain))
		}
		return o, nil
	}
	if len(chain) == 0 {
		return origin{}, fmt.Errorf("%w: relayed message without Received headers", ErrNoOrigin)
	}
	return origin{}, fmt.Errorf("%w: every Received hop is a trusted relay", ErrNoOrigin)
}

// FromARF converts a feedback-loop complaint. rep must be arf.Parse of
// in.Message (the redacted message), so that no text field can carry what
// redaction removed; nil parses in.Message here.
func FromARF(rep *arf.Report, in Input) (*Report, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if rep == nil {
		var err error
		if rep, err = arf.Parse(in.Message); err != nil {
			return nil, fmt.Errorf("reading report: %w", err)
		}
	}
	if rep.Class == arf.ClassNotReport {
		return nil, fmt.Errorf("%w: %s", ErrNotReport, reasonText(rep.Reason))
	}
	// Only abuse complaints become reports: an authentication failure
	// report, a retraction (not-spam), an opt-out or an unknown type is
	// not spam, and reporting it as spam would misstate it.
	disp := rep.Disposition()
	if disp.Action != arf.ActionReport {
		return nil, fmt.Errorf("%w: %s", ErrNotAbuse, reasonText(disp.Reason))
	}
	ft := disp.FeedbackType
	source, conf := SourceUserComplaint, 0.8
	b := newBuild(&in, source)
	o, ok := arfOrigin(rep)
	if !ok {
		return nil, fmt.Errorf("%w: no Source-IP, and no origin in the reported message's Received chain or the Subject", ErrNoOrigin)
	}
	if ft == "" {
		b.tag("feedback-type", "missing")
	} else {
		b.tag("feedback-type", ft)
	}
	switch rep.Class {
	case arf.ClassJMRP:
		b.tag("fbl", "jmrp")
		b.note("Microsoft JMRP complaint (not ARF).")
	case arf.ClassARFMalformed:
		b.tag("arf", "malformed")
		conf -= 0.1
		b.note("Malformed feedback report: facts were recovered heuristically.")
	default:
		b.tag("fbl", "arf")
	}
	// XARF v4.2.0's content/fraud and content/malware describe a web
	// site or a file at a URL (url is required, and the source is where
	// it is hosted), not a message sent from an address: a complaint of
	// fraud or virus stays messaging/spam, and its tag and description say
	// what the recipient alleged.
	switch org := sanitizeText(in.Reporter.Org); ft {
	case "fraud":
		b.note("A recipient at %s reported this message as fraud or phishing (feedback-type fraud); XARF v4.2.0 has no messaging type for it (content/fraud describes a web site), so it is reported as spam.", org)
	case "virus":
		b.note("A recipient at %s reported this message as carrying a virus or other malware (feedback-type virus); XARF v4.2.0 has no messaging type for it (content/malware describes a file at a URL), so it is reported as spam.", org)
	default:
		b.note("A recipient at %s reported this message as spam (feedback loop).", org)
	}
	var arrival time.Time
	if d := rep.ArrivalDate; d != nil && d.Parsed && !d.DateOnly {
		arrival = d.Time
	}
	o.date = arrival
	b.setOrigin(o, in.Received)

	// Envelope sender: Original-Mail-From, else the Return-Path recorded
	// when the reported message was delivered.
	var hdr arf.Header
	if rep.Embedded != nil {
		hdr = rep.Embedded.Header
	}
	if v, ok := rep.Field("Original-Mail-From"); ok {
		b.setFrom(v, true, "")
	} else if rp, ok := hdr.Get("Return-Path"); ok {
		b.setFrom(rp, true, "return-path")
	} else {
		b.setFrom("", false, "")
	}
	if rep.Embedded == nil {
		b.note("The report does not include the reported message.")
	} else {
		if rep.Embedded.HeadersOnly {
			b.tag("reported-message", "headers-only")
		}
		b.headerFields(hdr)
	}
	for _, u := range rep.ReportedURI {
		u = strings.Trim(u, "<> ")
		if validURI(u) && len(u) <= 2000 {
			if b.r.SpamIndicators == nil {
				b.r.SpamIndicators = &SpamIndicators{}
			}
			if len(b.r.SpamIndicators.SuspiciousLinks) < 20 {
				b.r.SpamIndicators.SuspiciousLinks = append(b.r.SpamIndicators.SuspiciousLinks, u)
			}
		}
	}
	var doms []string
	for _, d := range rep.ReportedDomain {
		if d = strings.Trim(strings.ToLower(d), ". "); validHostname(d) && len(doms) < 5 {
			doms = append(doms, d)
		}
	}
	if len(doms) > 0 {
		b.note("Reported domain: %s.", strings.Join(doms, ", "))
	}
	b.finish(&in, conf, o)
	return b.r, nil
}

func arfOrigin(rep *arf.Report) (origin, bool) {
	og := rep.Origin
	if og == nil || !og.IP.IsValid() {
		return origin{}, false
	}
	o := origin{ip: og.IP.Unmap(), port: og.Port, inferred: og.Inferred}
	switch og.Method {
	case arf.MethodSourceIP:
		o.method, o.how = "source-ip", "the report's Source-IP"
	case arf.MethodReceivedChain:
		o.method, o.how = "received-chain", "the reported message's Received chain (the report has no Source-IP)"
	case arf.MethodJMRPSubject:
		o.method, o.how = "jmrp-subject", "the complaint's Subject (JMRP carries no Source-IP)"
	case arf.MethodSubject:
		o.method, o.how = "subject", "the report's Subject (the report has no Source-IP)"
	default:
		o.method, o.how = tagWord(og.Method), "the report"
	}
	if o.port < 0 || o.port > 65535 {
		o.port = 0
	}
	return o, true
}

// setOrigin writes source_identifier, source_port and the timestamp.
func (b *build) setOrigin(o origin, received time.Time) {
	b.r.SourceIdentifier = o.ip.String()
	if o.port > 0 {
		b.r.SourcePort = o.port
	}
	if o.inferred {
		b.tag("origin", "inferred-"+o.method)
	} else {
		b.tag("origin", o.method)
	}
	if !arf.IsPublic(o.ip) {
		b.tag("origin", "non-public")
	}
	b.note("Origin %s taken from %s.", b.r.SourceIdentifier, o.how)
	t := received
	if !o.date.IsZero() && o.date.Year() >= 1970 && o.date.Year() <= 9999 {
		t = o.date
	}
	b.r.Timestamp = t.UTC().Format(time.RFC3339)
}

// setFrom sets smtp_from from a reverse-path. known is false when no
// envelope sender is known at all; "" with known is the null sender.
func (b *build) setFrom(v string, known bool, how string) {
	a := reversePath(v)
	b.from = ""
	switch {
	case !known:
		b.from = "unknown"
		b.tag("smtp-from", "unknown")
	case a == "":
		b.tag("smtp-from", "null")
		b.from = "null (a bounce or auto-reply)"
	case isPlaceholder(a):
		b.tag("smtp-from", "redacted")
		b.from = "redacted"
	case !validEmail(a):
		b.tag("smtp-from", "invalid")
		b.from = "not a valid address"
	default:
		b.r.SMTPFrom = a
		if how != "" {
			b.tag("smtp-from", how)
		}
	}
}

// reversePath extracts the address of a MAIL FROM / Return-Path /
// Original-Mail-From value: "<a@b>", "a@b", "Name <a@b>", "<>".
func reversePath(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j >= 0 {
			v = v[i+1 : i+j]
		}
	}
	v = strings.TrimSpace(strings.Trim(v, "<>"))
	// "@relay:user@host" source routes
	if strings.HasPrefix(v, "@") {
		if _, rest, ok := strings.Cut(v, ":"); ok {
			v = rest
		}
	}
	return v
}

// isPlaceholder reports the redaction package's replacement addresses
// (redacted@redacted.invalid, r-<hmac>@redacted.invalid).
func isPlaceholder(a string) bool {
	return strings.HasSuffix(strings.ToLower(a), "@redacted.invalid")
}

// headerFields takes subject, message_id, sender_name and user_agent from
// the (redacted) header of the spam message.
func (b *build) headerFields(h arf.Header) {
	if _, ok := h.Get("Subject"); ok {
		s := cleanLine(h.Decoded("Subject"))
		if utf8.RuneCountInString(s) > maxSubject {
			s = truncRunes(s, maxSubject)
			b.tag("subject", "truncated")
		}
		if s != "" {
			b.r.Subject = s
		}
	}
	b.r.MessageID = messageID(h)
	if v, ok := h.Get("From"); ok {
		if a, err := (&mail.AddressParser{}).Parse(v); err == nil {
			// net/mail decodes UTF-8 and Latin-1 encoded words only; arf
			// knows every charset go-message does.
			n := cleanLine(arf.Header{{Name: "n", Value: a.Name}}.Decoded("n"))
			if n != "" && utf8.RuneCountInString(n) <= maxSenderName {
				b.r.SenderName = n
			}
		}
	}
	for _, name := range []string{"User-Agent", "X-Mailer"} {
		if v := cleanLine(h.Decoded(name)); v != "" && utf8.RuneCountInString(v) <= maxUserAgent {
			b.r.UserAgent = v
			break
		}
	}
}

// messageID is the message_id a header yields ("" when none fits).
func messageID(h arf.Header) string {
	v, _ := h.Get("Message-ID")
	if v = strings.TrimSpace(v); v == "" || utf8.RuneCountInString(v) > maxMessageID {
		return ""
	}
	return cleanLine(v)
}

// ReportedMessageID is the message_id FromARF writes for the message rep
// reports ("" when it has none): what a not-spam report about the same
// message is matched by.
func ReportedMessageID(rep *arf.Report) string {
	if rep == nil || rep.Embedded == nil {
		return ""
	}
	return messageID(rep.Embedded.Header)
}

// finish sets protocol, smtp_to, evidence, confidence, tags and the
// description.
func (b *build) finish(in *Input, conf float64, o origin) {
	r := b.r
	switch {
	case r.SMTPFrom != "" && r.SourcePort > 0:
		r.Protocol = ProtocolSMTP
	default:
		r.Protocol = ProtocolOther
		b.tag("protocol", "smtp")
		var why []string
		if r.SMTPFrom == "" {
			why = append(why, "the envelope sender is "+b.from)
		}
		if r.SourcePort == 0 {
			why = append(why, "the source port is unknown")
		}
		b.note("Delivered over SMTP; protocol is given as \"other\" because %s; XARF's smtp needs both the envelope sender and the source port.", strings.Join(why, " and "))
	}
	// Say exactly what this channel's policy did: an abuse desk, and the
	// text of the mail that carries this report, must not read "removed"
	// where recipient data was sent.
	with := "the placeholder redacted@redacted.invalid"
	if in.Pseudonyms {
		with = "keyed pseudonyms (…@redacted.invalid; the same address always gives the same one)"
	}
	switch {
	case in.RecipientsRedacted:
		b.tag("redacted", "recipients")
		b.note("Recipient addresses (the envelope recipients and every address the message names as a recipient) were replaced by %s in this report and its evidence.", with)
	case in.ListRedacted:
		b.tag("redacted", "listed")
		b.note("Addresses and domains on the reporter's redaction list were replaced by %s; other recipient addresses appear as received, in smtp_to and the evidence.", with)
	default:
		b.tag("redacted", "none")
		b.note("Nothing was redacted: recipient addresses appear as received, in smtp_to and the evidence.")
	}
	if !in.RecipientsRedacted {
		if a := reversePath(in.Recipient); a != "" && validEmail(a) && !isPlaceholder(a) {
			r.SMTPTo = a
		}
	}
	if o.inferred {
		conf -= 0.1
	}
	r.Confidence = float64(int(conf*100+0.5)) / 100
	r.Evidence = []Evidence{b.evidence(in.Message)}
	r.Tags = b.tags
	r.Description = joinNotes(b.notes, maxDescription)
}

// evidence encodes the message; above MaxEvidenceSize only its header is
// kept.
func (b *build) evidence(msg []byte) Evidence {
	if len(msg) <= MaxEvidenceSize {
		return newEvidence("message/rfc822", "The complete message as received"+redactedSuffix(b), msg)
	}
	head := headerBlock(msg)
	b.tag("evidence", "headers-only")
	if len(head) > MaxEvidenceSize {
		head = head[:0]
	}
	b.note("The message (%d bytes) exceeds the XARF limit of %d bytes per evidence item, so the evidence holds its header only.", len(msg), MaxEvidenceSize)
	return newEvidence("text/rfc822-headers", "Header of the message only (the message is "+strconv.Itoa(len(msg))+" bytes, above the 5 MiB limit)"+redactedSuffix(b), head)
}

func redactedSuffix(b *build) string {
	switch {
	case containsString(b.tags, "redacted:recipients"):
		return ", recipient addresses redacted"
	case containsString(b.tags, "redacted:listed"):
		return ", listed addresses redacted"
	}
	return ", not redacted"
}

// headerBlock returns the header of msg including the empty line that ends
// it (or all of msg when there is none).
func headerBlock(msg []byte) []byte {
	_, body, found := header.Cut(msg)
	if !found {
		return msg
	}
	return msg[:len(msg)-len(body)]
}

func joinNotes(notes []string, max int) string {
	s := strings.Join(notes, " ")
	if utf8.RuneCountInString(s) > max {
		s = truncRunes(s, max-1) + "…"
	}
	return s
}

func truncRunes(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// cleanLine makes a header value one line of valid UTF-8 without control
// characters.
func cleanLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}

// reasonText is cleanLine for the reason a message yields no report: it
// becomes the quarantine reason, which an operator reads whole. The bound
// only keeps a hostile header from filling the record.
func reasonText(s string) string { return truncRunes(cleanLine(s), maxReason) }

// maxReason bounds reasonText: far above any reason of ours or host name.
const maxReason = 1000

// sanitizeText is cleanLine for configured names, bounded.
func sanitizeText(s string) string { return truncRunes(cleanLine(s), 200) }

func validURI(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n\\") {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return false
	}
	if h := u.Hostname(); strings.Contains(h, ":") {
		if !strings.Contains(u.Host, "[") {
			return false
		}
		if _, err := netip.ParseAddr(h); err != nil {
			return false
		}
	}
	return true
}
