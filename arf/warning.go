package arf

import "fmt"

// WarningCode names one kind of deviation from RFC 5965/6591/6692 or from
// MIME, stable enough for metrics labels and tests.
type WarningCode string

// Warning codes.
const (
	WarnTruncated            WarningCode = "truncated"              // input or structure beyond a limit
	WarnBOM                  WarningCode = "utf8-bom"               // byte-order mark before the header
	WarnBareCR               WarningCode = "bare-cr"                // old-Mac CR line endings
	WarnMixedLineEndings     WarningCode = "mixed-line-endings"     // CRLF mixed with LF
	WarnHeaderSyntax         WarningCode = "header-syntax"          // a header line that is not a field
	WarnContentType          WarningCode = "content-type"           // unparseable Content-Type
	WarnMissingBoundary      WarningCode = "missing-boundary"       // multipart without boundary parameter
	WarnNoClosingBoundary    WarningCode = "no-closing-boundary"    // multipart never closed
	WarnOuterType            WarningCode = "outer-type"             // top level is not multipart/report
	WarnMissingReportType    WarningCode = "missing-report-type"    // multipart/report without report-type
	WarnReportType           WarningCode = "report-type"            // report-type is not feedback-report
	WarnFeedbackPartType     WarningCode = "feedback-part-type"     // feedback part found under another media type
	WarnFeedbackPartEncoding WarningCode = "feedback-part-encoding" // feedback part is base64/quoted-printable
	WarnTransferEncoding     WarningCode = "transfer-encoding"      // unknown or broken Content-Transfer-Encoding
	WarnSingleLine           WarningCode = "single-line-feedback"   // all fields on one line
	WarnYAML                 WarningCode = "yaml-feedback"          // YAML-style feedback part
	WarnMissingField         WarningCode = "missing-field"          // a required field is absent
	WarnEmptyField           WarningCode = "empty-field"            // a field with an empty value
	WarnDuplicateField       WarningCode = "duplicate-field"        // a single-valued field repeated
	WarnVersion              WarningCode = "version"                // Version other than 1
	WarnFeedbackType         WarningCode = "feedback-type"          // unregistered Feedback-Type
	WarnReceivedDate         WarningCode = "received-date"          // pre-RFC Received-Date used
	WarnDate                 WarningCode = "date"                   // unparseable or zone-less date
	WarnSourceIP             WarningCode = "source-ip"              // Source-IP not an address, or needed cleaning
	WarnSourcePort           WarningCode = "source-port"            // Source-Port not a port
	WarnIncidents            WarningCode = "incidents"              // Incidents not a positive integer
	WarnNoEmbedded           WarningCode = "no-embedded-message"    // no message/rfc822 or headers part
	WarnEmbeddedType         WarningCode = "embedded-type"          // embedded part under a non-standard type
	WarnPartOrder            WarningCode = "part-order"             // parts not in RFC 5965 order
	WarnForwarded            WarningCode = "forwarded-report"       // report found inside another message
	WarnNoFeedbackPart       WarningCode = "no-feedback-part"       // facts recovered without a feedback part
)

// Warning is one deviation: a code for machines and text for people.
type Warning struct {
	Code WarningCode `json:"code"`
	Text string      `json:"text"`
}

func (w Warning) String() string { return string(w.Code) + ": " + w.Text }

// maxWarnings bounds the list so that a hostile message with a million bad
// lines cannot make the report itself huge.
const maxWarnings = 200

type warnings struct {
	list    []Warning
	dropped int
}

func (w *warnings) add(code WarningCode, format string, args ...any) {
	if len(w.list) >= maxWarnings {
		w.dropped++
		return
	}
	w.list = append(w.list, Warning{Code: code, Text: fmt.Sprintf(format, args...)})
}

func (w *warnings) result() []Warning {
	if w.dropped > 0 {
		w.list = append(w.list, Warning{Code: WarnTruncated, Text: fmt.Sprintf("%d further warnings dropped", w.dropped)})
		w.dropped = 0
	}
	return w.list
}
