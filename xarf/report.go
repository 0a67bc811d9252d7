package xarf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Version is the XARF version this package writes.
const Version = "4.2.0"

// Categories and the messaging types this package writes.
const (
	CategoryMessaging = "messaging"
	TypeSpam          = "spam"
)

// Evidence sources this package writes (the messaging/spam enumeration has
// more).
const (
	SourceSpamtrap        = "spamtrap"
	SourceUserComplaint   = "user_complaint"
	SourceAutomatedFilter = "automated_filter"
)

// Protocols this package writes.
const (
	ProtocolSMTP  = "smtp"
	ProtocolOther = "other"
)

// MaxEvidenceSize is the largest decoded evidence item the spec allows
// (xarf-core.json, evidence_item.size: "max 5MB per item").
const MaxEvidenceSize = 5 << 20

// Limits from the schemas, in characters (Unicode code points).
const (
	maxDescription  = 1000
	maxSubject      = 500
	maxMessageID    = 200
	maxSenderName   = 200
	maxUserAgent    = 200
	maxEvidenceDesc = 500
	maxTags         = 20
	maxEvidence     = 50
)

// Contact is the reporter or sender of a report (xarf-core contact_info).
// All three fields are required by the schema.
type Contact struct {
	Org     string `json:"org"`
	Contact string `json:"contact"`
	Domain  string `json:"domain"`
}

// Evidence is one evidence item. Payload is base64 (standard alphabet,
// padded); Hash is "algorithm:hex" of the decoded payload.
type Evidence struct {
	ContentType string `json:"content_type"`
	Description string `json:"description,omitempty"`
	Payload     string `json:"payload"`
	Hash        string `json:"hash,omitempty"`
	// Size is the decoded length in bytes; nil when not stated.
	Size *int64 `json:"size,omitempty"`
}

// SpamIndicators is the messaging/spam spam_indicators object.
type SpamIndicators struct {
	SuspiciousLinks     []string `json:"suspicious_links,omitempty"`
	CommercialContent   *bool    `json:"commercial_content,omitempty"`
	BulkCharacteristics *bool    `json:"bulk_characteristics,omitempty"`
}

// Report is one XARF v4 document. The core fields and the messaging ones
// have typed slots; every other member (the fields of the other categories,
// _internal, future additions) is kept in Extra, so that a valid document
// of any category survives Unmarshal and Marshal without loss.
//
// On Unmarshal a member goes to its typed field only when the typed field
// encodes back to the same JSON value (a zero value such as "" or 0, which
// the typed fields omit, a member of an unexpected JSON type, or an object
// with members the typed field does not know stay in Extra instead).
// On Marshal the typed fields come first, in schema order, then Extra in
// key order; a typed field that is set wins over an Extra member of the
// same name.
type Report struct {
	XARFVersion      string     `json:"xarf_version,omitempty"`
	ReportID         string     `json:"report_id,omitempty"`
	Timestamp        string     `json:"timestamp,omitempty"` // RFC 3339; see Time
	Reporter         *Contact   `json:"reporter,omitempty"`
	Sender           *Contact   `json:"sender,omitempty"`
	SourceIdentifier string     `json:"source_identifier,omitempty"`
	SourcePort       int        `json:"source_port,omitempty"`
	Category         string     `json:"category,omitempty"`
	Type             string     `json:"type,omitempty"`
	EvidenceSource   string     `json:"evidence_source,omitempty"`
	Evidence         []Evidence `json:"evidence,omitempty"`
	Tags             []string   `json:"tags,omitempty"`
	Confidence       float64    `json:"confidence,omitempty"`
	Description      string     `json:"description,omitempty"`
	LegacyVersion    string     `json:"legacy_version,omitempty"`

	// messaging (spam, bulk_messaging); Protocol and UserAgent are also
	// used by the connection category.
	Protocol       string          `json:"protocol,omitempty"`
	SMTPFrom       string          `json:"smtp_from,omitempty"`
	SMTPTo         string          `json:"smtp_to,omitempty"`
	Subject        string          `json:"subject,omitempty"`
	SenderName     string          `json:"sender_name,omitempty"`
	MessageID      string          `json:"message_id,omitempty"`
	UserAgent      string          `json:"user_agent,omitempty"`
	RecipientCount int             `json:"recipient_count,omitempty"`
	Language       string          `json:"language,omitempty"`
	SpamIndicators *SpamIndicators `json:"spam_indicators,omitempty"`

	// Extra holds every other member, as written.
	Extra map[string]json.RawMessage `json:"-"`
}

// plain has Report's fields without its methods.
type plain Report

// Time parses Timestamp.
func (r *Report) Time() (time.Time, error) {
	return time.Parse(time.RFC3339Nano, r.Timestamp)
}

// fieldIndex maps JSON member names to the index of their typed field.
var fieldIndex = func() map[string]int {
	m := map[string]int{}
	t := reflect.TypeFor[plain]()
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("json")
		name, _, _ := bytesCut(tag, ',')
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}()

func bytesCut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// MarshalJSON writes the typed fields, then Extra. '<', '>' and '&' are
// not escaped: message ids and subjects stay readable.
func (r Report) MarshalJSON() ([]byte, error) {
	// Evidence payloads are nearly all of a report (the message in
	// base64) and base64 needs no escaping: they are kept out of the
	// encoder, which would check every byte and copy it twice, and
	// copied into their place after it.
	p := plain(r)
	var payloads []string // of each evidence item written as "payload":"", in order
	for i, e := range r.Evidence {
		if len(e.Payload) < 1024 && e.Payload != "" {
			continue
		}
		if !isBase64Text(e.Payload) {
			continue // the encoder escapes it
		}
		if payloads == nil {
			p.Evidence = slices.Clone(r.Evidence)
		}
		p.Evidence[i].Payload = ""
		payloads = append(payloads, e.Payload)
	}
	size, spliced := 2048, 0
	for _, e := range r.Evidence {
		size += len(e.Payload) + len(e.Description) + 128
	}
	for _, pl := range payloads {
		spliced += len(pl)
	}
	b := bytes.NewBuffer(make([]byte, 0, size-spliced))
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	if payloads != nil {
		var err error
		if b, err = spliceBase64(b, payloads, size); err != nil {
			return nil, err
		}
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	if len(r.Extra) == 0 {
		return b.Bytes(), nil
	}
	keys := make([]string, 0, len(r.Extra))
	v := reflect.ValueOf(plain(r))
	for k := range r.Extra {
		if i, typed := fieldIndex[k]; typed && !omitted(v.Field(i)) {
			continue // the typed field was written
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	first := b.Len() == 2 // "{}"
	b.Truncate(b.Len() - 1)
	for _, k := range keys {
		if !first {
			b.WriteByte(',')
		}
		first = false
		name, _ := json.Marshal(k)
		b.Write(name)
		b.WriteByte(':')
		if err := json.Compact(b, r.Extra[k]); err != nil {
			return nil, fmt.Errorf("xarf: member %q: %w", k, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// emptyPayload is an evidence payload left out of the encoder. Inside a
// JSON string every quote is escaped, so this can only be a member: one
// written empty, in evidence order (nothing before the evidence array
// has a payload member).
var emptyPayload = []byte(`"payload":""`)

// spliceBase64 puts payloads, in order, into the empty payload members
// of the encoded report enc.
func spliceBase64(enc *bytes.Buffer, payloads []string, size int) (*bytes.Buffer, error) {
	out := bytes.NewBuffer(make([]byte, 0, size))
	rest := enc.Bytes()
	for _, pl := range payloads {
		i := bytes.Index(rest, emptyPayload)
		if i < 0 {
			return nil, errors.New("xarf: encoded evidence without its payload member")
		}
		at := i + len(emptyPayload) - 1 // before the closing quote
		out.Write(rest[:at])
		out.WriteString(pl)
		rest = rest[at:]
	}
	out.Write(rest)
	return out, nil
}

// isBase64Text reports whether s holds only the standard base64 alphabet
// and padding: JSON needs no escape for any of it.
func isBase64Text(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// UnmarshalJSON reads any JSON object; see Report for where members go.
func (r *Report) UnmarshalJSON(data []byte) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return err
	}
	if members == nil {
		return fmt.Errorf("xarf: report is null, want an object")
	}
	*r = Report{}
	v := reflect.ValueOf((*plain)(r)).Elem()
	for k, raw := range members {
		i, typed := fieldIndex[k]
		if typed && setExact(v.Field(i), raw) {
			continue
		}
		if r.Extra == nil {
			r.Extra = map[string]json.RawMessage{}
		}
		r.Extra[k] = append(json.RawMessage(nil), raw...)
	}
	return nil
}

// setExact decodes raw into f and keeps it only when f encodes back to the
// same JSON value.
func setExact(f reflect.Value, raw json.RawMessage) bool {
	p := reflect.New(f.Type())
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if dec.Decode(p.Interface()) != nil || omitted(p.Elem()) {
		return false
	}
	back, err := json.Marshal(p.Interface())
	if err != nil || !SameJSON(back, raw) {
		return false
	}
	f.Set(p.Elem())
	return true
}

// SameJSON reports whether a and b are the same JSON value: member order
// and white space are ignored, numbers compare by value.
func SameJSON(a, b []byte) bool {
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	db := json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return sameValue(x, y)
}

func sameValue(x, y any) bool {
	switch a := x.(type) {
	case map[string]any:
		b, ok := y.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !sameValue(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := y.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := y.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		fa, ea := a.Float64()
		fb, eb := b.Float64()
		return ea == nil && eb == nil && fa == fb
	default:
		return x == y
	}
}

// omitted reports whether encoding/json's omitempty drops v.
func omitted(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map, reflect.String:
		return v.Len() == 0
	default:
		return v.IsZero()
	}
}
