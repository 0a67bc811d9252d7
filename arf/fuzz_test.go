package arf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func addSeeds(f *testing.F) {
	for _, dir := range []string{fixtureDir, corpusDirIfPresent()} {
		if dir == "" {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
}

func corpusDirIfPresent() string {
	base := os.Getenv("XARFD_SHARED")
	if base == "" {
		base = filepath.Join("..", "..", "shared")
	}
	dir := filepath.Join(base, "testdata", "arf")
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

// FuzzParse: Parse never panics (a recovered panic surfaces as ErrInternal
// and fails here), returns a report or an error, and what it returns is
// internally consistent.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Add([]byte("Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse(raw)
		if errors.Is(err, ErrInternal) {
			t.Fatalf("panic inside Parse: %v", err)
		}
		// ParseHeader reads the same top-level header, never more.
		h, herr := ParseHeader(raw)
		if errors.Is(herr, ErrInternal) {
			t.Fatalf("panic inside ParseHeader: %v", herr)
		}
		if r != nil && len(h) != len(r.Header) {
			t.Fatalf("ParseHeader found %d fields, Parse %d", len(h), len(r.Header))
		}
		if (r == nil) == (err == nil) {
			t.Fatalf("Parse returned report %v and error %v", r != nil, err)
		}
		if r == nil {
			return
		}
		switch r.Class {
		case ClassARF, ClassARFMalformed, ClassJMRP, ClassNotReport:
		default:
			t.Fatalf("unknown class %q", r.Class)
		}
		if r.Reason == "" {
			t.Fatal("empty reason")
		}
		if d := r.Disposition(); d.Action != ActionReport && d.Reason == "" {
			t.Fatalf("%s without a reason", d.Action)
		}
		if r.Class == ClassARF && r.FeedbackType == "" {
			t.Fatal("arf without Feedback-Type")
		}
		if r.Origin != nil && !r.Origin.IP.IsValid() {
			t.Fatal("origin without address")
		}
		_ = r.RecipientAddresses()
		if len(r.Warnings) > maxWarnings+1 {
			t.Fatalf("%d warnings", len(r.Warnings))
		}
	})
}

// FuzzParseReceived: never panics; a parsed address is always valid.
func FuzzParseReceived(f *testing.F) {
	for _, s := range receivedCases {
		f.Add(s.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReceived(s)
		if err != nil && err != ErrNotReceived {
			t.Fatalf("unexpected error %v", err)
		}
		if r.Port < 0 {
			t.Fatalf("negative port %d", r.Port)
		}
		if r.Raw != s {
			t.Fatal("Raw not kept")
		}
	})
}

// FuzzParseHeaderPrefix: reading the header from headerPart gives exactly
// the fields that normalizing and parsing the whole message gives.
func FuzzParseHeaderPrefix(f *testing.F) {
	addSeeds(f)
	for _, s := range []string{
		"From: a\r\n\r\nbody\r\n\r\n", "From: a\n\nbody", "From: a\r\rSubject: b\r\n\r\n",
		"From: a\r\n   \r\nSubject: b\r\n\r\n", "\r\n\r\nFrom: a", "From a@b Mon\nSubject: x\n\n",
		"\xef\xbb\xbfFrom: a\r\n\r\n", "From: a\r\r\nb: c\n\n", "Subject: no end",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > MaxInputSize {
			return
		}
		var w1, w2 warnings
		whole, _ := parseHeader(normalize(raw, &w1), &w1)
		part, _ := parseHeader(normalize(headerPart(raw), &w2), &w2)
		if len(whole) != len(part) {
			t.Fatalf("%q: %d fields from the whole message, %d from its header part", raw, len(whole), len(part))
		}
		for i := range whole {
			if whole[i] != part[i] {
				t.Fatalf("%q: field %d is %+v, from the header part %+v", raw, i, whole[i], part[i])
			}
		}
	})
}
