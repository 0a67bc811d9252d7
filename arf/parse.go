package arf

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"unsafe"

	"github.com/emersion/go-message/charset"

	"github.com/xarfd/xarfd/internal/header"
)

// Errors Parse returns when nothing at all can be read.
const (
	ErrEmpty    = arfError("arf: empty message")
	ErrNoHeader = arfError("arf: no header fields found")
	// ErrInternal wraps a recovered panic: a bug in this package, reported
	// as an error so that one hostile message cannot stop the daemon.
	ErrInternal = arfError("arf: internal error")
)

// Parse reads one message and says what it is (Report.Class, with
// Report.Reason) and every fact it could extract. Well-formed messages that
// are not reports yield ClassNotReport, not an error; an error is returned
// only when the input has no header at all. The report may share memory
// with raw (Embedded.Raw does when raw's lines all end in CRLF): raw must
// not change while the report is in use.
func Parse(raw []byte) (rep *Report, err error) {
	defer func() {
		if p := recover(); p != nil {
			rep, err = nil, fmt.Errorf("%w: %v", ErrInternal, p)
		}
	}()
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, ErrEmpty
	}
	var w warnings
	if len(raw) > MaxInputSize {
		w.add(WarnTruncated, "message of %d bytes cut to %d", len(raw), MaxInputSize)
		raw = raw[:MaxInputSize]
	}
	data := normalize(raw, &w)
	root := parseEntity(data, 0, &w)
	if len(root.header) == 0 {
		return nil, ErrNoHeader
	}
	p := &parser{r: &Report{Header: root.header}, w: &w, root: root, data: data}
	if src := bytes.TrimPrefix(raw, utf8BOM); len(src)-len(data) == bytes.Count(data, []byte{'\n'}) {
		// Every line of the input ended in CRLF (normalize turned each
		// into one LF): a part of data in wire form is a part of src.
		p.wire = src
	}
	p.run()
	p.r.Warnings = w.result()
	return p.r, nil
}

type parser struct {
	r    *Report
	w    *warnings
	root *entity
	data []byte // the input with LF line endings, which entities slice
	wire []byte // the input, when data is it with each CRLF made LF; else nil
}

// toWire is b with CRLF line endings. When b is a slice of data and the
// input was all CRLF, that is a slice of the input: the reported message,
// the largest part of a report, is then not copied again.
func (p *parser) toWire(b []byte) []byte {
	if p.wire == nil || len(b) == 0 || len(b) > len(p.data) {
		return toCRLF(b)
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - uintptr(unsafe.Pointer(unsafe.SliceData(p.data)))
	if start > uintptr(len(p.data)-len(b)) { // also when b is before data (wrapped)
		return toCRLF(b)
	}
	o := int(start)
	if &p.data[o] != &b[0] { // not inside data after all
		return toCRLF(b)
	}
	from := o + bytes.Count(p.data[:o], []byte{'\n'})
	n := len(b) + bytes.Count(b, []byte{'\n'})
	return p.wire[from : from+n : from+n]
}

// feedbackTypes maps media types accepted for the feedback part to whether
// they are the standard one.
var feedbackTypes = map[string]bool{
	"message/feedback-report": true,
	"message/feedback_report": false, "message/feedback-reports": false, "message/feedbackreport": false,
	"text/feedback-report": false, "application/feedback-report": false, "message/x-feedback-report": false,
}

// embeddedTypes maps media types accepted for the reported message to
// whether they are standard (RFC 5965 allows message/rfc822 and
// text/rfc822-headers; RFC 6532 adds the message/global forms).
var embeddedTypes = map[string]bool{
	"message/rfc822": true, "text/rfc822-headers": true, "message/global": true, "message/global-headers": true,
	"text/rfc822-header": false, "message/rfc822-headers": false, "message/rfc822-header": false,
	"text/rfc822": false, "message/rfc2822": false, "text/rfc2822-headers": false, "text/headers": false,
}

func headersOnly(mt string) bool { return strings.Contains(mt, "header") }

func (p *parser) run() {
	if fb := findFeedback(p.root); fb != nil {
		p.fromFeedback(p.root, fb)
		return
	}
	if inner, fb := p.findForwarded(p.root, 0); fb != nil {
		p.w.add(WarnForwarded, "the feedback report is inside an attached message/rfc822")
		p.fromFeedback(inner, fb)
		if p.r.Class == ClassARF {
			p.r.Class = ClassARFMalformed
			p.r.Reason = "feedback report forwarded inside another message"
		}
		return
	}
	if p.fromText() {
		return
	}
	if p.jmrp() {
		return
	}
	if p.reportWithoutFeedback() {
		return
	}
	p.r.Class = ClassNotReport
	p.r.Reason = p.negativeReason()
}

// walk visits the multipart tree (not inside message/rfc822) depth first.
func walk(e *entity, f func(*entity) bool) bool {
	if f(e) {
		return true
	}
	for _, c := range e.parts {
		if walk(c, f) {
			return true
		}
	}
	return false
}

func findFeedback(root *entity) *entity {
	var std, alt *entity
	walk(root, func(e *entity) bool {
		if isStd, ok := feedbackTypes[e.mediaType]; ok && e != root {
			if isStd {
				std = e
				return true
			}
			if alt == nil {
				alt = e
			}
		}
		return false
	})
	if std != nil {
		return std
	}
	return alt
}

func (p *parser) fromFeedback(root, fb *entity) {
	r, w := p.r, p.w
	switch rt := strings.ToLower(root.params["report-type"]); {
	case root.mediaType != "multipart/report":
		w.add(WarnOuterType, "outer type is %s, not multipart/report", root.mediaType)
	case rt == "":
		w.add(WarnMissingReportType, "multipart/report without report-type parameter")
	case rt != "feedback-report":
		w.add(WarnReportType, "report-type is %q, not feedback-report", truncateForText([]byte(rt)))
	}
	standard := feedbackTypes[fb.mediaType]
	if !standard {
		w.add(WarnFeedbackPartType, "feedback part declared as %s", fb.mediaType)
	}
	switch fb.cte() {
	case "base64", "quoted-printable":
		w.add(WarnFeedbackPartEncoding, "feedback part is %s-encoded (RFC 5965 wants 7bit)", fb.cte())
	}
	body := fb.decodedBody("feedback part", w)
	r.applyFields(parseFeedbackFields(body, fb.mediaType, w), w)

	if parent := fb.parent; parent != nil {
		for _, s := range parent.parts {
			if s != fb && s.mediaType == "text/plain" {
				r.Text = p.text(s)
				break
			}
		}
		idx := indexOf(parent.parts, fb)
		if idx != 1 {
			w.add(WarnPartOrder, "feedback part is part %d of its container, not the second", idx+1)
		}
		if idx+1 < len(parent.parts) {
			r.ThirdPart = parent.parts[idx+1].mediaType
		}
		var emb *entity
		if idx+1 < len(parent.parts) {
			if _, ok := embeddedTypes[parent.parts[idx+1].mediaType]; ok {
				emb = parent.parts[idx+1]
			}
		}
		if emb == nil {
			for _, s := range parent.parts {
				if _, ok := embeddedTypes[s.mediaType]; ok && s != fb {
					emb = s
					w.add(WarnPartOrder, "reported message is not the part after the feedback part")
					break
				}
			}
		}
		if emb != nil {
			r.Embedded = p.embedded(emb)
		} else {
			w.add(WarnNoEmbedded, "no message/rfc822 or text/rfc822-headers part")
		}
	}
	switch {
	case r.FeedbackType == "":
		r.Class, r.Reason = ClassARFMalformed, "feedback part without Feedback-Type"
	case !standard:
		r.Class, r.Reason = ClassARFMalformed, "feedback fields in a "+fb.mediaType+" part"
	default:
		r.Class, r.Reason = ClassARF, "message/feedback-report part with Feedback-Type "+r.FeedbackType
	}
	p.origin()
}

// text decodes a text part to UTF-8; an unknown charset keeps the bytes.
func (p *parser) text(e *entity) string {
	body := e.decodedBody("text part", p.w)
	cs := strings.ToLower(e.params["charset"])
	if cs != "" && cs != "utf-8" && cs != "us-ascii" && cs != "ascii" {
		if rd, err := charset.Reader(cs, bytes.NewReader(body)); err == nil {
			if out, err := io.ReadAll(io.LimitReader(rd, int64(4*len(body)+16))); err == nil {
				body = out
			}
		}
	}
	return strings.TrimSpace(string(body))
}

func indexOf(list []*entity, e *entity) int {
	for i, x := range list {
		if x == e {
			return i
		}
	}
	return -1
}

func (p *parser) embedded(e *entity) *Embedded {
	if std, ok := embeddedTypes[e.mediaType]; ok && !std {
		p.w.add(WarnEmbeddedType, "reported message declared as %s", e.mediaType)
	}
	body := e.decodedBody("reported message", p.w)
	body = bytes.TrimLeft(body, "\n")
	// The reported message's own sloppiness is not the report's fault.
	var ignore warnings
	h, _ := parseHeader(body, &ignore)
	if len(h) >= maxHeaderFields {
		p.w.add(WarnTruncated, "reported message has more than %d header fields; the rest ignored", maxHeaderFields)
	}
	return &Embedded{
		ContentType: e.mediaType,
		HeadersOnly: headersOnly(e.mediaType),
		Raw:         p.toWire(body),
		Header:      h,
		Received:    ReceivedChain(h),
	}
}

// findForwarded looks inside attached messages for a feedback report (a
// report forwarded by a person or a ticket system).
func (p *parser) findForwarded(e *entity, depth int) (*entity, *entity) {
	var inner, fb *entity
	walk(e, func(x *entity) bool {
		if x.mediaType != "message/rfc822" || depth+1 >= maxDepth {
			return false
		}
		var ignore warnings
		body := bytes.TrimLeft(x.decodedBody("attached message", &ignore), "\n")
		in := parseEntity(body, depth+1, &ignore)
		if f := findFeedback(in); f != nil {
			inner, fb = in, f
			return true
		}
		if i, f := p.findForwarded(in, depth+1); f != nil {
			inner, fb = i, f
			return true
		}
		return false
	})
	return inner, fb
}

// feedbackTypeLine returns the offset of the first line of body that
// starts with "Feedback-Type:" (any case, "_" for "-", blanks allowed
// around the name), or -1. A hand-written scan: this runs over every text
// part of every message, trap mail included, and a case-insensitive
// multi-line regexp has no literal prefix to skip ahead with.
func feedbackTypeLine(body []byte) int {
	for start := 0; start < len(body); {
		line := body[start:]
		if nl := bytes.IndexByte(line, '\n'); nl >= 0 {
			line = line[:nl]
		}
		if isFeedbackTypeLine(line) {
			return start
		}
		start += len(line) + 1
	}
	return -1
}

func isFeedbackTypeLine(line []byte) bool {
	line = bytes.TrimLeft(line, " \t")
	const name = "feedback-type"
	if len(line) < len(name)+1 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := line[i] | 0x20 // ASCII lower case; '-' and '_' are handled below
		if i == 8 {
			if line[i] != '-' && line[i] != '_' {
				return false
			}
			continue
		}
		if c != name[i] {
			return false
		}
	}
	rest := bytes.TrimLeft(line[len(name):], " \t")
	return len(rest) > 0 && rest[0] == ':'
}

// fromText finds feedback fields pasted into a text part (some ticket
// systems and forwarders flatten the report).
func (p *parser) fromText() bool {
	var found []byte
	walk(p.root, func(e *entity) bool {
		if len(e.parts) > 0 || !strings.HasPrefix(e.mediaType, "text/") {
			return false
		}
		var ignore warnings
		body := e.decodedBody("text part", &ignore)
		at := feedbackTypeLine(body)
		if at < 0 {
			return false
		}
		block := body[at:]
		if end := bytes.Index(block, []byte("\n\n")); end >= 0 {
			block = block[:end]
		}
		found = block
		return true
	})
	if found == nil {
		return false
	}
	var ignore warnings
	fields := parseFeedbackFields(found, "", &ignore)
	tmp := &Report{}
	tmp.applyFields(fields, &ignore)
	if tmp.FeedbackType == "" {
		return false
	}
	p.w.add(WarnNoFeedbackPart, "feedback fields found in a text part, not in message/feedback-report")
	p.r.applyFields(fields, p.w)
	walk(p.root, func(e *entity) bool {
		if _, ok := embeddedTypes[e.mediaType]; ok && e != p.root {
			p.r.Embedded = p.embedded(e)
			return true
		}
		return false
	})
	p.r.Class, p.r.Reason = ClassARFMalformed, "feedback fields pasted into a text part"
	p.origin()
	return true
}

var (
	jmrpSubject = regexp.MustCompile(`(?i)complaint about message from\s+\[?([0-9a-fA-F:.]+)`)
	subjectIP   = regexp.MustCompile(`(?i)\b(?:from|ip|address)\s*:?\s+(?:ip\s+)?\[?([0-9a-fA-F:.]*[0-9a-fA-F])\]?`)
	// dmarcSubject: Exim ("DMARC Forensic Report for …"), OpenDMARC and
	// others name failure reports so.
	dmarcSubject = regexp.MustCompile(`(?i)\bdmarc\b.*\b(forensic|failure)\b|\bforensic report\b|\bauthentication failure report\b`)
	subjectFor   = regexp.MustCompile(`(?i)\breport\s+for\s+(?:domain\s+)?([a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)\b`)
)

// jmrp recognises Microsoft's Junk Mail Reporting Program complaints: a
// multipart/mixed message with the complained-about message attached, the
// origin only in the Subject and the recipient in X-HmXmrOriginalRecipient.
func (p *parser) jmrp() bool {
	var att *entity
	walk(p.root, func(e *entity) bool {
		if e.mediaType == "message/rfc822" && e != p.root {
			att = e
			return true
		}
		return false
	})
	if att == nil {
		return false
	}
	subj := p.root.header.Decoded("Subject")
	m := jmrpSubject.FindStringSubmatch(subj)
	emb := p.embedded(att)
	rcpt := emb.Header.Values("X-HmXmrOriginalRecipient")
	if m == nil && len(rcpt) == 0 {
		return false
	}
	r := p.r
	r.Class, r.Reason = ClassJMRP, "Microsoft JMRP complaint (not ARF)"
	r.Embedded = emb
	r.infer("feedback-type", "implied by Microsoft JMRP complaint", "abuse")
	if len(rcpt) > 0 {
		r.infer("original-rcpt-to", "X-HmXmrOriginalRecipient header", rcpt...)
	}
	if m != nil {
		if a, _, _, _ := ParseIP(m[1]); a.IsValid() {
			r.Origin = &Origin{IP: a, Inferred: true, Method: MethodJMRPSubject}
			r.infer("source-ip", `Subject "complaint about message from <IP>"`, a.String())
		}
	}
	if r.Origin == nil {
		p.origin()
	}
	return true
}

// nonFeedbackReportTypes are multipart/report kinds that are not
// complaints.
var nonFeedbackReportTypes = map[string]string{
	"delivery-status":                 "delivery status notification (RFC 3464 bounce)",
	"disposition-notification":        "message disposition notification (read receipt)",
	"multi-recipient-delivery-status": "delivery status notification",
	"tlsrpt":                          "TLS report (RFC 8460)",
}

// reportWithoutFeedback handles a multipart/report that is not a DSN but
// has no feedback part (Exim's DMARC forensic reports paste headers into a
// text part and put the facts in the Subject).
func (p *parser) reportWithoutFeedback() bool {
	if p.root.mediaType != "multipart/report" {
		return false
	}
	rt := strings.ToLower(p.root.params["report-type"])
	if _, dsn := nonFeedbackReportTypes[rt]; dsn || hasPart(p.root, "message/delivery-status") {
		return false
	}
	r := p.r
	subj := p.root.header.Decoded("Subject")
	if a, ok := ipFromSubject(subj); ok {
		r.Origin = &Origin{IP: a, Inferred: true, Method: MethodSubject}
		r.infer("source-ip", "Subject "+quote(subj), a.String())
	}
	if m := subjectFor.FindStringSubmatch(subj); m != nil {
		r.infer("reported-domain", "Subject", strings.ToLower(m[1]))
	}
	if dmarcSubject.MatchString(subj) {
		// A DMARC forensic report without feedback part is still an
		// authentication failure report, not a spam complaint.
		r.infer("feedback-type", "Subject "+quote(subj), "auth-failure")
	}
	// Pasted headers: a text part containing a Received line.
	walk(p.root, func(e *entity) bool {
		if len(e.parts) > 0 || !strings.HasPrefix(e.mediaType, "text/") || e == p.root {
			return false
		}
		var ignore warnings
		body := e.decodedBody("text part", &ignore)
		i := bytes.Index(body, []byte("\nReceived:"))
		if i < 0 {
			return false
		}
		h, _ := parseHeader(body[i+1:], &ignore)
		r.Embedded = &Embedded{ContentType: e.mediaType, HeadersOnly: true, Raw: p.toWire(body[i+1:]), Header: h, Received: ReceivedChain(h)}
		return true
	})
	if r.Origin == nil && r.Embedded != nil {
		p.origin()
	}
	if r.Origin == nil {
		return false
	}
	if rt == "" {
		p.w.add(WarnMissingReportType, "multipart/report without report-type parameter")
	}
	p.w.add(WarnNoFeedbackPart, "multipart/report without a message/feedback-report part")
	r.Class, r.Reason = ClassARFMalformed, "multipart/report without feedback part; facts from "+r.Origin.Method
	return true
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return `"` + s + `"`
}

func hasPart(root *entity, mt string) bool {
	return walk(root, func(e *entity) bool { return e.mediaType == mt })
}

func ipFromSubject(s string) (netip.Addr, bool) {
	for _, m := range subjectIP.FindAllStringSubmatch(s, -1) {
		if a, _, _, _ := ParseIP(m[1]); a.IsValid() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

var (
	autoReplySubject   = regexp.MustCompile(`(?i)^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|vacation|away from)`)
	bounceSubject      = regexp.MustCompile(`(?i)(undeliver|undelivered|delivery (status|failure|has failed)|failure notice|returned mail|mail delivery (failed|failure|subsystem)|non[- ]?delivery|could not be delivered|delivery notification|unzustellbar)`)
	unsubscribeSubject = regexp.MustCompile(`(?i)^\s*(re:\s*)?unsubscribe\b`)
	daemonFrom         = regexp.MustCompile(`(?i)(mailer-daemon|postmaster|mail delivery (subsystem|system))`)
)

func (p *parser) negativeReason() string {
	h := p.root.header
	rt := strings.ToLower(p.root.params["report-type"])
	if p.root.mediaType == "multipart/report" {
		if why, ok := nonFeedbackReportTypes[rt]; ok {
			return why
		}
		if hasPart(p.root, "message/delivery-status") {
			return nonFeedbackReportTypes["delivery-status"]
		}
		return "multipart/report without a feedback part or usable facts"
	}
	subj := h.Decoded("Subject")
	from, _ := h.Get("From")
	auto, _ := h.Get("Auto-Submitted")
	auto = strings.ToLower(strings.TrimSpace(auto))
	_, xauto := h.Get("X-Autoreply")
	_, xautor := h.Get("X-Autorespond")
	prec, _ := h.Get("Precedence")
	_, appleUnsub := h.Get("X-Apple-Unsubscribe")
	switch {
	case appleUnsub || unsubscribeSubject.MatchString(subj):
		return "unsubscribe request"
	case strings.HasPrefix(auto, "auto-replied") || xauto || xautor ||
		strings.EqualFold(strings.TrimSpace(prec), "auto_reply") || autoReplySubject.MatchString(subj):
		return "auto-reply"
	case daemonFrom.MatchString(from) || bounceSubject.MatchString(subj):
		return "bounce (non-delivery notification)"
	case hasPart(p.root, "message/rfc822"):
		return "message with an attached message but no feedback report (a forward)"
	case strings.HasPrefix(auto, "auto-"):
		return "automatically generated message without a feedback report"
	}
	return "plain message: no feedback report"
}

// ParseHeader reads only the top-level header of raw, as leniently as
// Parse does (line endings, BOM, folding), without walking the body: for
// callers that need the header of plain mail (trap hits) and nothing
// else. It returns ErrEmpty or ErrNoHeader when there is none.
func ParseHeader(raw []byte) (h Header, err error) {
	defer func() {
		if p := recover(); p != nil {
			h, err = nil, fmt.Errorf("%w: %v", ErrInternal, p)
		}
	}()
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, ErrEmpty
	}
	if len(raw) > MaxInputSize {
		raw = raw[:MaxInputSize]
	}
	var w warnings
	h, _ = parseHeader(normalize(headerPart(raw), &w), &w)
	if len(h) == 0 {
		return nil, ErrNoHeader
	}
	return h, nil
}

// headerPart returns raw up to and including its first empty line (LF or
// CRLF), or all of raw when there is none. The header parser stops at or
// before that line, so it reads the same fields, and the body is not
// normalized (copied) for nothing: trap hits are mostly body.
func headerPart(raw []byte) []byte {
	_, body, found := header.Cut(raw)
	if !found {
		return raw
	}
	return raw[:len(raw)-len(body)]
}
