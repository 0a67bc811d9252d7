package redact

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Form is the shape in which an occurrence of an address was found.
type Form uint8

// The forms Apply counts. A form describes how the occurrence was written in
// the message, so a literal address inside a URL with %40 counts as FormURL.
const (
	FormLiteral         Form = iota // the address as text, any case
	FormLocalPart                   // the local part alone (Policy.LocalPart)
	FormEncodedWord                 // inside RFC 2047 encoded words (B or Q)
	FormQuotedPrintable             // behind =XX escapes or soft line breaks
	FormURL                         // behind %XX escapes
	FormHTMLEntity                  // behind HTML character references
	FormBase64                      // base64 (standard alphabet) of the address, any alignment
	FormBase64URL                   // base64url of the address, any alignment
	FormHex                         // hex of the address bytes
	FormMD5                         // hex md5 digest of the address
	FormSHA1                        // hex sha1 digest of the address
	FormSHA256                      // hex sha256 digest of the address
	FormUTF16                       // UTF-16 (either byte order) text
	FormBase64Part                  // a base64 MIME part decoded, redacted and re-encoded
	numForms
)

var formNames = [numForms]string{
	"literal", "local-part", "encoded-word", "quoted-printable", "url", "html-entity",
	"base64", "base64url", "hex", "md5", "sha1", "sha256", "utf16", "base64-part",
}

func (f Form) String() string {
	if f < numForms {
		return formNames[f]
	}
	return "form(" + strconv.Itoa(int(f)) + ")"
}

// Summary counts what Apply replaced. It holds only counts indexed by Form,
// never an address or any part of one, so it is safe to log, to store and to
// put in metrics.
type Summary struct {
	counts    [numForms]int
	addresses int
}

// Count is the number of occurrences of form f that were replaced.
func (s Summary) Count(f Form) int {
	if f >= numForms {
		return 0
	}
	return s.counts[f]
}

// Total is the number of occurrences replaced, base64 parts not counted
// (their content is counted by its own forms).
func (s Summary) Total() int {
	n := 0
	for f, c := range s.counts {
		if Form(f) != FormBase64Part {
			n += c
		}
	}
	return n
}

// Addresses is the number of distinct addresses that were looked for,
// including those found at configured domains.
func (s Summary) Addresses() int { return s.addresses }

// String renders "literal:2,url:1", or "none" when nothing was replaced.
func (s Summary) String() string {
	var b strings.Builder
	for f, c := range s.counts {
		if c == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(formNames[f])
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(c))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// MarshalJSON renders {"addresses":N,"forms":{"literal":2}}.
func (s Summary) MarshalJSON() ([]byte, error) {
	forms := map[string]int{}
	for f, c := range s.counts {
		if c > 0 {
			forms[formNames[f]] = c
		}
	}
	return json.Marshal(struct {
		Addresses int            `json:"addresses"`
		Forms     map[string]int `json:"forms"`
	}{s.addresses, forms})
}
