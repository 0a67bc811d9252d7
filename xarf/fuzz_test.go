package xarf

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// seeds adds the corpus, the fixtures and the official samples.
func seeds(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(g)
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
}

// FuzzConvert: any message, through both converters, with and without an
// envelope, never panics, and every report produced passes the semantic
// checks and survives Marshal and Unmarshal.
func FuzzConvert(f *testing.F) {
	seeds(f, filepath.Join(corpusDir(), "*.eml"), filepath.Join(fixtureDir, "*.eml"))
	f.Add([]byte("Received: from x ([2001:db8::1]:25) by y; Sun, 1 Mar 2026 00:00:00 +0000\n\nb"))
	f.Add([]byte("Received: from\n\n"))
	trusted := trustedNets("192.0.2.0/24")
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, env := range []*Envelope{nil, {Peer: netip.MustParseAddrPort("192.0.2.1:25"), MailFrom: "a@b.example"}} {
			in := corpusInput(msg)
			in.Envelope, in.Trusted = env, trusted
			for _, conv := range []func(Input) (*Report, error){FromTrap, func(in Input) (*Report, error) { return FromARF(nil, in) }} {
				doc, err := conv(in)
				if err != nil {
					if doc != nil {
						t.Fatalf("report and error: %v", err)
					}
					continue
				}
				b, err := json.Marshal(doc)
				if err != nil {
					t.Fatal(err)
				}
				if err := Validate(b); err != nil {
					t.Fatalf("semantic check fails on a produced report: %v\n%s", err, b)
				}
				var back Report
				if err := json.Unmarshal(b, &back); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// FuzzReport: Unmarshal of any input never panics, and whatever it accepts
// re-encodes to the same JSON value; Validate never panics.
func FuzzReport(f *testing.F) {
	seeds(f, filepath.Join(samplesDir(), "*.json"), filepath.Join(fixtureDir, "*.json"))
	f.Add([]byte(`{"evidence":[{"payload":"aGk=","hash":"sha1:00"}],"first_seen":"x","last_seen":"y"}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		_ = Validate(doc)
		var r Report
		if json.Unmarshal(doc, &r) != nil {
			return
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal after unmarshal: %v", err)
		}
		if !SameJSON(doc, out) && json.Valid(doc) && !hasDuplicateKeys(doc) {
			t.Fatalf("round trip changed the value:\n%s\n%s", doc, out)
		}
	})
}

// hasDuplicateKeys: encoding/json keeps the last of duplicate members, so
// such documents cannot round-trip byte-for-value.
func hasDuplicateKeys(doc []byte) bool {
	dec := json.NewDecoder(bytesReader(doc))
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return false
				}
				ks, _ := k.(string)
				if seen[ks] {
					return true
				}
				seen[ks] = true
				if walk() {
					return true
				}
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				if walk() {
					return true
				}
			}
			dec.Token()
		}
		return false
	}
	return walk()
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
