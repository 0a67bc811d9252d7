package arf

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/xarfd/xarfd/internal/header"
)

// BuildRequest is what Build needs to write an RFC 5965 report. The
// carrier header (From, To, Subject, Date, Message-ID) is the caller's.
type BuildRequest struct {
	From, To, Subject, MessageID string
	Date                         time.Time
	// Text is the human-readable first part; a default is written when empty.
	Text string
	// Feedback supplies the feedback fields: FeedbackType (required),
	// UserAgent, Version (default "1"), ArrivalDate (Time, or Raw when not
	// parsed), SourceIP, SourcePort, OriginalMailFrom, OriginalRcptTo,
	// OriginalEnvelopeID, ReportedDomain, ReportedURI,
	// AuthenticationResults, Incidents, ReportingMTA, the RFC 6591 fields,
	// RemovalRecipient and Unknown (written last, in order).
	Feedback *Report
	// Original is the reported message. With HeadersOnly only its header
	// is sent, as text/rfc822-headers.
	Original    []byte
	HeadersOnly bool
	// Boundary makes the output reproducible; random when empty.
	Boundary string
}

// Build writes a multipart/report; report-type=feedback-report message
// with CRLF line endings. It refuses values containing line breaks, since
// a field value from a hostile report must never inject header fields.
func Build(req BuildRequest) ([]byte, error) {
	fb := req.Feedback
	if fb == nil || fb.FeedbackType == "" {
		return nil, fmt.Errorf("arf: building report: Feedback-Type is required")
	}
	if req.From == "" || req.To == "" || req.MessageID == "" || req.Date.IsZero() {
		return nil, fmt.Errorf("arf: building report: From, To, Date and Message-ID are required")
	}
	boundary := req.Boundary
	if boundary == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		boundary = "arf-" + hex.EncodeToString(b[:])
	}
	var fields []Field
	add := func(name string, vals ...string) {
		for _, v := range vals {
			fields = append(fields, Field{name, v})
		}
	}
	add("Feedback-Type", fb.FeedbackType)
	add("User-Agent", orDefault(fb.UserAgent, "xarfd"))
	add("Version", orDefault(fb.Version, "1"))
	if d := fb.ArrivalDate; d != nil {
		if !d.Time.IsZero() {
			add("Arrival-Date", d.Time.Format(time.RFC1123Z))
		} else if d.Raw != "" {
			add("Arrival-Date", d.Raw)
		}
	}
	if ip := fb.SourceIP; ip != nil {
		if ip.Addr.IsValid() {
			add("Source-IP", ip.Addr.String())
		} else if ip.Raw != "" {
			return nil, fmt.Errorf("arf: building report: Source-IP %q is not an address", ip.Raw)
		}
	}
	if fb.SourcePort != 0 {
		add("Source-Port", strconv.Itoa(fb.SourcePort))
	}
	if fb.OriginalMailFrom != "" {
		add("Original-Mail-From", fb.OriginalMailFrom)
	}
	add("Original-Rcpt-To", fb.OriginalRcptTo...)
	if fb.OriginalEnvelopeID != "" {
		add("Original-Envelope-Id", fb.OriginalEnvelopeID)
	}
	add("Reported-Domain", fb.ReportedDomain...)
	add("Reported-URI", fb.ReportedURI...)
	add("Authentication-Results", fb.AuthenticationResults...)
	if fb.Incidents > 0 {
		add("Incidents", strconv.Itoa(fb.Incidents))
	}
	for _, kv := range [][2]string{
		{"Reporting-MTA", fb.ReportingMTA}, {"Auth-Failure", fb.AuthFailure}, {"Delivery-Result", fb.DeliveryResult},
		{"DKIM-Domain", fb.DKIMDomain}, {"DKIM-Identity", fb.DKIMIdentity}, {"DKIM-Selector", fb.DKIMSelector},
		{"DKIM-Canonicalized-Header", fb.DKIMCanonicalizedHeader}, {"DKIM-Canonicalized-Body", fb.DKIMCanonicalizedBody},
	} {
		if kv[1] != "" {
			add(kv[0], kv[1])
		}
	}
	add("SPF-DNS", fb.SPFDNS...)
	if fb.IdentityAlignment != "" {
		add("Identity-Alignment", fb.IdentityAlignment)
	}
	add("Removal-Recipient", fb.RemovalRecipient...)
	fields = append(fields, fb.Unknown...)

	var b bytes.Buffer
	hdr := []Field{
		{"From", req.From}, {"To", req.To}, {"Subject", mime.QEncoding.Encode("utf-8", req.Subject)},
		{"Date", req.Date.Format(time.RFC1123Z)}, {"Message-ID", req.MessageID}, {"MIME-Version", "1.0"},
		{"Content-Type", mime.FormatMediaType("multipart/report", map[string]string{"report-type": "feedback-report", "boundary": boundary})},
	}
	if err := writeFields(&b, hdr); err != nil {
		return nil, err
	}
	b.WriteString("\r\n")
	b.WriteString("This is a multi-part message in MIME format.\r\n\r\n")

	text := req.Text
	if text == "" {
		text = "This is an email abuse report for an email message"
		if fb.SourceIP != nil && fb.SourceIP.Addr.IsValid() {
			text += " received from IP " + fb.SourceIP.Addr.String()
		}
		text += ".\nFor more information about this format please see RFC 5965.\n"
	}
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n", boundary)
	b.Write(toCRLF(toLF([]byte(strings.TrimRight(text, "\r\n")+"\n"), nil)))

	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/feedback-report\r\n\r\n", boundary)
	if err := writeFields(&b, fields); err != nil {
		return nil, err
	}

	if req.Original != nil {
		orig := toLF(bytes.TrimPrefix(req.Original, utf8BOM), nil)
		ctype := "message/rfc822"
		if req.HeadersOnly {
			ctype = "text/rfc822-headers"
			if hdr, _, found := header.Cut(orig); found {
				orig = hdr
			}
		}
		if bytes.Contains(orig, []byte("--"+boundary)) {
			return nil, fmt.Errorf("arf: building report: boundary %q occurs in the original message", boundary)
		}
		fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: %s\r\nContent-Disposition: inline\r\n\r\n", boundary, ctype)
		b.Write(toCRLF(orig))
		if len(orig) > 0 && orig[len(orig)-1] != '\n' {
			b.WriteString("\r\n")
		}
	}
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes(), nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// writeFields writes name: value lines, folding long values at white space.
func writeFields(b *bytes.Buffer, fields []Field) error {
	for _, f := range fields {
		if !validFieldName([]byte(f.Name)) {
			return fmt.Errorf("arf: building report: invalid field name %q", f.Name)
		}
		if strings.ContainsAny(f.Value, "\r\n") {
			return fmt.Errorf("arf: building report: %s value contains a line break", f.Name)
		}
		line := f.Name + ": " + f.Value
		for len(line) > 78 {
			i := strings.LastIndexAny(line[:78], " \t")
			if i <= len(f.Name)+2 || strings.TrimSpace(line[i:]) == "" {
				break // no place to fold; RFC 5322 allows up to 998
			}
			b.WriteString(line[:i])
			b.WriteString("\r\n")
			line = line[i:]
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	return nil
}
