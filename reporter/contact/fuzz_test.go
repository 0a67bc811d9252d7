package contact

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseRDAP: a registry's answer is untrusted input. Whatever it
// holds, parsing never panics and every address it yields is one line, a
// valid address fit for a To field.
func FuzzParseRDAP(f *testing.F) {
	for _, file := range []string{"rdap-ripe.json", "rdap-arin.json", "rdap-apnic.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"entities":[{"roles":["abuse"],"vcardArray":["vcard",[["email",{},"text","a@b.example\r\nBcc: x@y.z"]]]}]}`))
	f.Add([]byte(`{"errorCode":404}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		emails, err := parseRDAP(body)
		if err != nil {
			return
		}
		for _, a := range emails {
			if strings.ContainsAny(a, "\r\n") || !ValidEmail(a) {
				t.Fatalf("parseRDAP yielded %q", a)
			}
		}
	})
}

// FuzzParseEmails: TXT records of a DNS zone are untrusted too.
func FuzzParseEmails(f *testing.F) {
	f.Add("abuse@dns-desk.example second@dns-desk.example,abuse@dns-desk.example")
	f.Add("a@b.example\r\nBcc: x@y.z")
	f.Fuzz(func(t *testing.T, s string) {
		for _, a := range parseEmails(s) {
			if strings.ContainsAny(a, "\r\n") || !ValidEmail(a) {
				t.Fatalf("parseEmails(%q) yielded %q", s, a)
			}
		}
	})
}
