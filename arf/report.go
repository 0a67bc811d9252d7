package arf

import (
	"mime"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"
)

// Class says what kind of message Parse was given, so that ingest can decide
// between reporting and quarantining without re-inspecting the message.
type Class string

const (
	// ClassARF: a message/feedback-report part was found and parsed.
	ClassARF Class = "arf"
	// ClassARFMalformed: the message means to be a feedback report and usable
	// facts were recovered, but only by leaning on heuristics (no proper
	// feedback part, report forwarded inside another message, Feedback-Type
	// missing, facts taken from the Subject).
	ClassARFMalformed Class = "arf-malformed"
	// ClassJMRP: a Microsoft JMRP complaint (multipart/mixed, not ARF).
	ClassJMRP Class = "jmrp"
	// ClassNotReport: bounces, DSNs, auto-replies, forwards and plain mail.
	ClassNotReport Class = "not-a-report"
)

// Field is one header or feedback field as written: Name keeps the sender's
// spelling and Value is unfolded (line breaks removed, whitespace kept) and
// trimmed.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Header is an ordered list of fields; lookups are case-insensitive.
type Header []Field

// Get returns the first value of the named field and whether it is present.
func (h Header) Get(name string) (string, bool) {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// Values returns every value of the named field, in order.
func (h Header) Values(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value)
		}
	}
	return out
}

// Decoded returns the first value of the named field with RFC 2047 encoded
// words decoded (any charset go-message knows). Undecodable words are left as
// they are rather than losing the value.
func (h Header) Decoded(name string) string {
	v, _ := h.Get(name)
	return decodeWords(v)
}

func decodeWords(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	d := mime.WordDecoder{CharsetReader: charset.Reader}
	s, err := d.DecodeHeader(v)
	if err != nil {
		return v
	}
	return s
}

// Date is a date field kept both as written and, when possible, parsed.
type Date struct {
	Field string    `json:"field"` // "Arrival-Date" or the pre-RFC "Received-Date"
	Raw   string    `json:"raw"`
	Time  time.Time `json:"time,omitzero"`
	// Parsed is false when Raw could not be understood; Time is then zero.
	Parsed bool `json:"parsed"`
	// DateOnly: Raw had no time of day (midnight UTC assumed).
	DateOnly bool `json:"date_only,omitempty"`
	// ZoneAssumed: Raw had no usable zone and UTC was assumed.
	ZoneAssumed bool `json:"zone_assumed,omitempty"`
}

// IP is the Source-IP field: Raw as written, Addr normalised (IPv6
// compressed, IPv4-mapped IPv6 unmapped, comment stripped). Addr is invalid
// when Raw is not an address.
type IP struct {
	Raw     string     `json:"raw"`
	Addr    netip.Addr `json:"addr,omitzero"`
	Comment string     `json:"comment,omitempty"`
}

// Embedded is the reported message (message/rfc822) or its header
// (text/rfc822-headers).
type Embedded struct {
	// ContentType is the declared media type, lowercased, misspellings kept.
	ContentType string `json:"content_type"`
	// HeadersOnly is true for text/rfc822-headers and its variants.
	HeadersOnly bool `json:"headers_only"`
	// Raw is the part's content after transfer decoding, with CRLF line
	// endings (the wire form, so that signatures and evidence hashes match
	// what other tools compute).
	Raw      []byte     `json:"-"`
	Header   Header     `json:"header"`
	Received []Received `json:"received,omitempty"`
}

// Origin is where the reported message came from.
type Origin struct {
	IP   netip.Addr `json:"ip"`
	Port int        `json:"port,omitempty"`
	// Inferred is false only when the report stated it (Source-IP).
	Inferred bool `json:"inferred"`
	// Method is one of the Method* constants.
	Method string `json:"method"`
}

// Origin methods.
const (
	MethodSourceIP      = "source-ip"
	MethodReceivedChain = "received-chain"
	MethodSubject       = "subject"
	MethodJMRPSubject   = "jmrp-subject"
)

// Inference is a fact that no ARF field states, derived from elsewhere.
type Inference struct {
	Field  string   `json:"field"` // lowercase ARF field name it stands for, e.g. "feedback-type"
	Values []string `json:"values"`
	How    string   `json:"how"`
}

// Report is everything Parse could learn from one message.
type Report struct {
	Class    Class     `json:"class"`
	Reason   string    `json:"reason"`
	Warnings []Warning `json:"warnings,omitempty"`

	// Header is the top-level header of the message Parse was given.
	Header Header `json:"header"`
	// Text is the human-readable part of the report, transfer-decoded and
	// converted to UTF-8 where the charset is known.
	Text string `json:"text,omitempty"`

	FeedbackType string `json:"feedback_type,omitempty"` // lowercased
	Version      string `json:"version,omitempty"`
	UserAgent    string `json:"user_agent,omitempty"`
	ArrivalDate  *Date  `json:"arrival_date,omitempty"`
	SourceIP     *IP    `json:"source_ip,omitempty"`
	// SourcePort is the RFC 6692 Source-Port; 0 when absent or invalid.
	SourcePort            int      `json:"source_port,omitempty"`
	OriginalMailFrom      string   `json:"original_mail_from,omitempty"`
	OriginalRcptTo        []string `json:"original_rcpt_to,omitempty"`
	OriginalEnvelopeID    string   `json:"original_envelope_id,omitempty"`
	ReportedDomain        []string `json:"reported_domain,omitempty"`
	ReportedURI           []string `json:"reported_uri,omitempty"`
	AuthenticationResults []string `json:"authentication_results,omitempty"`
	// Incidents is 0 when absent or invalid (RFC 5965 says 1 then).
	Incidents    int    `json:"incidents,omitempty"`
	ReportingMTA string `json:"reporting_mta,omitempty"`

	// RFC 6591 authentication failure fields.
	AuthFailure             string   `json:"auth_failure,omitempty"`
	DeliveryResult          string   `json:"delivery_result,omitempty"`
	DKIMDomain              string   `json:"dkim_domain,omitempty"`
	DKIMIdentity            string   `json:"dkim_identity,omitempty"`
	DKIMSelector            string   `json:"dkim_selector,omitempty"`
	DKIMCanonicalizedHeader string   `json:"dkim_canonicalized_header,omitempty"` // base64, whitespace removed
	DKIMCanonicalizedBody   string   `json:"dkim_canonicalized_body,omitempty"`   // base64, whitespace removed
	SPFDNS                  []string `json:"spf_dns,omitempty"`
	IdentityAlignment       string   `json:"identity_alignment,omitempty"`

	RemovalRecipient []string `json:"removal_recipient,omitempty"`

	// Fields is every feedback field in file order; Unknown the ones this
	// package has no typed slot for.
	Fields  []Field `json:"fields,omitempty"`
	Unknown []Field `json:"unknown,omitempty"`

	// ThirdPart is the declared media type (lowercased) of the part after
	// the feedback part in its container; "" when there is none.
	ThirdPart string    `json:"third_part,omitempty"`
	Embedded  *Embedded `json:"embedded,omitempty"`

	Origin   *Origin     `json:"origin,omitempty"`
	Inferred []Inference `json:"inferred,omitempty"`
}

// Field returns the first feedback field of that name (case-insensitive,
// '_' matching '-') and whether it was present at all, so that callers can
// tell an empty value from an absent one.
func (r *Report) Field(name string) (string, bool) {
	c := canonName(name)
	for _, f := range r.Fields {
		if canonName(f.Name) == c {
			return f.Value, true
		}
	}
	return "", false
}

// InferredValues returns the inferred values for a field and how they were
// found.
func (r *Report) InferredValues(field string) ([]string, string) {
	for _, in := range r.Inferred {
		if in.Field == field {
			return in.Values, in.How
		}
	}
	return nil, ""
}

// HasWarning reports whether a warning with that code was recorded.
func (r *Report) HasWarning(c WarningCode) bool {
	for _, w := range r.Warnings {
		if w.Code == c {
			return true
		}
	}
	return false
}

func (r *Report) infer(field, how string, values ...string) {
	for i := range r.Inferred {
		if r.Inferred[i].Field == field {
			return
		}
	}
	r.Inferred = append(r.Inferred, Inference{Field: field, Values: values, How: how})
}

func canonName(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.ReplaceAll(s, "_", "-")
}
