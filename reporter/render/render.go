// Package render writes outbound abuse reports: XARF-over-email (a text
// part for the person at the desk, the XARF JSON, the redacted evidence)
// or RFC 5965 ARF, with a human summary. It adds no recipient of the
// reported message: its input is the stored, already redacted evidence.
package render

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/reporter/contact"
	"github.com/xarfd/xarfd/xarf"
)

// Formats of outbound reports (reporter.format).
const (
	FormatXARF = "xarf"
	FormatARF  = "arf"
)

// Mail is what Render needs to write one outbound report.
type Mail struct {
	Format string
	// From is our sending address; ReplyTo how to reach a person (the
	// installation's contact), omitted when equal to From.
	From, ReplyTo string
	To            []string
	// Hostname makes the Message-ID (<xarfd.<id>@<hostname>>).
	Hostname string
	// Org names this installation in the text.
	Org string
	// Channel is the channel the report came from, named in the text.
	Channel string
	// UserAgent goes into the feedback part.
	UserAgent string
	// Report is the stored XARF document; Evidence the stored (redacted)
	// message it was made from.
	Report   []byte
	Evidence []byte
	// EntryID makes the Message-ID; Count is how many received reports
	// this one stands for; Window the de-duplication window.
	EntryID string
	Count   int
	Window  time.Duration
	Date    time.Time
	// Boundary makes the output reproducible (tests); random when empty.
	Boundary string
}

// Rendered is a message ready to sign and send.
type Rendered struct {
	Bytes     []byte
	MessageID string
	Subject   string
	// Preview is the header and the text summary, without evidence.
	Preview string
}

// Render writes the report as XARF-over-email or RFC 5965 ARF. Neither
// adds any recipient of the reported message: the evidence is the stored,
// already redacted message, and the XARF document is the stored one.
func (m *Mail) Render() (*Rendered, error) {
	var rep xarf.Report
	if err := json.Unmarshal(m.Report, &rep); err != nil {
		return nil, fmt.Errorf("rendering report: reading the XARF document: %w", err)
	}
	if len(m.To) == 0 {
		return nil, fmt.Errorf("rendering report: no recipient")
	}
	for _, a := range append(append([]string{m.From}, m.To...), m.ReplyTo) {
		if a != "" && !contact.ValidEmail(a) {
			return nil, fmt.Errorf("rendering report: %q is not a plain address", a)
		}
	}
	if m.Date.IsZero() {
		m.Date = time.Now()
	}
	if m.Count < 1 {
		m.Count = 1
	}
	boundary := m.Boundary
	if boundary == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		boundary = "xarfd-" + hex.EncodeToString(b[:])
	}
	msgID := "<xarfd." + m.EntryID + "@" + m.Hostname + ">"
	subject := subjectOf(&rep)
	text := summary(m, &rep)

	switch m.Format {
	case FormatARF:
		return renderARF(m, &rep, msgID, subject, text, boundary)
	case FormatXARF, "":
	default:
		return nil, fmt.Errorf("rendering report: unknown format %q", m.Format)
	}

	var b bytes.Buffer
	hdr := header(m, msgID, subject)
	hdr = append(hdr, [2]string{"Content-Type", mime.FormatMediaType("multipart/report", map[string]string{"report-type": "feedback-report", "boundary": boundary})})
	writeHeader(&b, hdr)
	b.WriteString("\r\nThis is an abuse report in XARF v4 format (https://xarf.org), carried as RFC 5965 feedback.\r\n\r\n")
	preview := b.String()

	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", boundary)
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	_ = qp.Close()
	preview += text

	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: message/feedback-report\r\n\r\n", boundary)
	fb := [][2]string{{"Feedback-Type", "xarf"}, {"User-Agent", m.UserAgent}, {"Version", "1"}}
	if t, err := rep.Time(); err == nil {
		fb = append(fb, [2]string{"Arrival-Date", t.Format(time.RFC1123Z)})
	}
	if rep.SourceIdentifier != "" {
		fb = append(fb, [2]string{"Source-IP", rep.SourceIdentifier})
	}
	if rep.SourcePort != 0 {
		fb = append(fb, [2]string{"Source-Port", fmt.Sprint(rep.SourcePort)})
	}
	if m.Count > 1 {
		fb = append(fb, [2]string{"Incidents", fmt.Sprint(m.Count)})
	}
	writeHeader(&b, fb)

	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: application/json; name=\"xarf.json\"\r\nContent-Disposition: attachment; filename=\"xarf.json\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary)
	writeBase64(&b, m.Report)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return &Rendered{Bytes: b.Bytes(), MessageID: msgID, Subject: subject, Preview: preview}, nil
}

func renderARF(m *Mail, rep *xarf.Report, msgID, subject, text, boundary string) (*Rendered, error) {
	fb := &arf.Report{FeedbackType: "abuse", UserAgent: m.UserAgent, Version: "1"}
	if t, err := rep.Time(); err == nil {
		fb.ArrivalDate = &arf.Date{Field: "Arrival-Date", Time: t, Parsed: true}
	}
	if a, _, _, _ := arf.ParseIP(rep.SourceIdentifier); a.IsValid() {
		fb.SourceIP = &arf.IP{Raw: a.String(), Addr: a}
	}
	fb.SourcePort = rep.SourcePort
	if contact.ValidEmail(rep.SMTPFrom) {
		fb.OriginalMailFrom = "<" + rep.SMTPFrom + ">"
	}
	if d := reportedDomain(rep, m.Evidence); d != "" {
		fb.ReportedDomain = []string{d}
	}
	if m.Count > 1 {
		fb.Incidents = m.Count
	}
	out, err := arf.Build(arf.BuildRequest{
		From: m.From, To: strings.Join(m.To, ", "), Subject: subject, MessageID: msgID, Date: m.Date,
		Text: text, Feedback: fb, Original: m.Evidence, Boundary: boundary,
	})
	if err != nil {
		return nil, fmt.Errorf("rendering ARF report: %w", err)
	}
	// arf.Build writes From..Content-Type; add ours after Message-ID.
	var extra bytes.Buffer
	extraHdr := [][2]string{{"Auto-Submitted", "auto-generated"}}
	if m.ReplyTo != "" && !strings.EqualFold(m.ReplyTo, m.From) {
		extraHdr = append(extraHdr, [2]string{"Reply-To", m.ReplyTo})
	}
	writeHeader(&extra, extraHdr)
	out = append(extra.Bytes(), out...)
	end := bytes.Index(out, []byte("\r\n\r\n"))
	preview := string(out[:end+4]) + text
	return &Rendered{Bytes: out, MessageID: msgID, Subject: subject, Preview: preview}, nil
}

func header(m *Mail, msgID, subject string) [][2]string {
	h := [][2]string{
		{"From", m.From},
		{"To", strings.Join(m.To, ", ")},
	}
	if m.ReplyTo != "" && !strings.EqualFold(m.ReplyTo, m.From) {
		h = append(h, [2]string{"Reply-To", m.ReplyTo})
	}
	return append(h,
		[2]string{"Subject", mime.QEncoding.Encode("utf-8", subject)},
		[2]string{"Date", m.Date.Format(time.RFC1123Z)},
		[2]string{"Message-ID", msgID},
		[2]string{"Auto-Submitted", "auto-generated"},
		[2]string{"X-XARF", "PLAIN"},
		[2]string{"MIME-Version", "1.0"},
	)
}

// writeHeader writes fields, refusing nothing: every value here is ours
// or checked (addresses by ValidEmail, the subject Q-encoded); line
// breaks are removed all the same.
func writeHeader(b *bytes.Buffer, fields [][2]string) {
	for _, f := range fields {
		v := strings.NewReplacer("\r", " ", "\n", " ").Replace(f[1])
		b.WriteString(f[0] + ": " + v + "\r\n")
	}
}

func writeBase64(b *bytes.Buffer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
}

func what(rep *xarf.Report) string {
	switch rep.EvidenceSource {
	case xarf.SourceSpamtrap:
		return "spam received by a spam trap"
	case "user_complaint":
		// fraud and virus complaints are messaging/spam in XARF (no
		// messaging type fits them); the tag keeps what was alleged.
		switch {
		case slices.Contains(rep.Tags, "feedback-type:fraud"):
			return "fraud or phishing reported by its recipient"
		case slices.Contains(rep.Tags, "feedback-type:virus"):
			return "a virus or malware reported by its recipient"
		}
		return "spam reported by its recipient"
	}
	return rep.Type + " (" + rep.Category + ")"
}

func subjectOf(rep *xarf.Report) string {
	when := rep.Timestamp
	if t, err := rep.Time(); err == nil {
		when = t.UTC().Format("2006-01-02 15:04 UTC")
	}
	return fmt.Sprintf("Abuse report: %s from %s at %s", what(rep), rep.SourceIdentifier, when)
}

// summary is the first MIME part: what a person at the abuse desk reads
// before any machine part. It says what happened, when, from where, what
// the report's recipient data is (from the document's redaction tag, so
// it is true of the data sent, whatever the configuration says now), how
// to reply and, for XARF, the reported message's header as stored, which
// otherwise sits base64 inside the JSON.
func summary(m *Mail, rep *xarf.Report) string {
	var b strings.Builder
	org := m.Org
	if org == "" {
		org = m.Hostname
	}
	fmt.Fprintf(&b, "This is an automated abuse report from %s.\n\n", org)
	fmt.Fprintf(&b, "What:      %s\n", what(rep))
	if t, err := rep.Time(); err == nil {
		fmt.Fprintf(&b, "When:      %s\n", t.UTC().Format(time.RFC3339))
	}
	src := rep.SourceIdentifier
	if rep.SourcePort != 0 {
		src += fmt.Sprintf(" port %d", rep.SourcePort)
	}
	fmt.Fprintf(&b, "Source IP: %s\n", src)
	if m.Channel != "" {
		fmt.Fprintf(&b, "Channel:   %s", m.Channel)
		if rep.Reporter != nil && rep.Reporter.Org != "" && rep.Reporter.Org != org {
			fmt.Fprintf(&b, " (observed by %s)", oneLine(rep.Reporter.Org, 200))
		}
		b.WriteString("\n")
	}
	if rep.SMTPFrom != "" {
		fmt.Fprintf(&b, "Sender:    %s (envelope)\n", rep.SMTPFrom)
	}
	if rep.SMTPTo != "" {
		fmt.Fprintf(&b, "Recipient: %s (envelope)\n", rep.SMTPTo)
	}
	if rep.Subject != "" {
		fmt.Fprintf(&b, "Subject:   %s\n", oneLine(rep.Subject, 200))
	}
	if m.Count > 1 {
		fmt.Fprintf(&b, "Incidents: %d (the same message from this address within %s)\n", m.Count, m.Window)
	}
	fmt.Fprintf(&b, "Report ID: %s\n\n", rep.ReportID)
	if m.Format == FormatARF {
		fmt.Fprintf(&b, "The reported message follows in RFC 5965 format, %s\n", redactionText(rep))
	} else {
		fmt.Fprintf(&b, "The attached xarf.json is an XARF v4 report (https://xarf.org); its evidence is the\nmessage as received, %s\n", redactionText(rep))
	}
	contact := m.ReplyTo
	if contact == "" {
		contact = m.From
	}
	fmt.Fprintf(&b, "\nThis message was sent automatically. To reply, write to %s and quote the Report ID.\n", contact)
	if m.Format != FormatARF {
		if h := headerText(m.Evidence); h != "" {
			b.WriteString("\nThe reported message's header, as stored:\n\n")
			b.WriteString(h)
		}
	}
	return b.String()
}

// redactionText says what the report's recipient data is, from the tag
// the conversion wrote. A document without one (written before the tag
// existed by a channel that did not redact recipients) is not claimed to
// be redacted.
func redactionText(rep *xarf.Report) string {
	switch {
	case slices.Contains(rep.Tags, "redacted:recipients"):
		return "with the recipients' addresses replaced by placeholders."
	case slices.Contains(rep.Tags, "redacted:listed"):
		return "with the addresses on our redaction list replaced by placeholders;\nother recipient addresses are included as received."
	}
	return "including its recipients' addresses as received (this source does not redact them)."
}

// maxHeaderText bounds the header shown in the summary: a real header is
// a few KiB; a hostile one must not make the text part huge.
const maxHeaderText = 16 << 10

// headerText is the header of the stored message as text lines, valid
// UTF-8, cut at maxHeaderText; "" when none is stored.
func headerText(evidence []byte) string {
	if len(evidence) == 0 {
		return ""
	}
	h := string(evidence)
	for _, sep := range []string{"\r\n\r\n", "\n\n"} {
		if i := strings.Index(h, sep); i >= 0 {
			h = h[:i]
			break
		}
	}
	h = strings.ReplaceAll(h, "\r\n", "\n")
	cut := len(h) > maxHeaderText
	if cut {
		h = h[:maxHeaderText]
		if i := strings.LastIndexByte(h, '\n'); i > 0 {
			h = h[:i]
		}
	}
	h = strings.ToValidUTF8(strings.TrimRight(h, "\n"), "\uFFFD")
	if h == "" {
		return ""
	}
	if cut {
		h += "\n[header cut at 16 KiB; the whole message is in the evidence]"
	}
	return h + "\n"
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// reportedDomain is the domain of the envelope sender, else of the
// reported message's From.
func reportedDomain(rep *xarf.Report, evidence []byte) string {
	addr := rep.SMTPFrom
	if addr == "" {
		if msg, err := mail.ReadMessage(bytes.NewReader(evidence)); err == nil {
			if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
				addr = a.Address
			}
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	d := strings.ToLower(addr[at+1:])
	if !strings.Contains(d, ".") || strings.ContainsAny(d, " \t\r\n<>") {
		return ""
	}
	return d
}
