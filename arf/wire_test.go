package arf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The reported message of a CRLF input is taken from the input as it is;
// it must be byte for byte what converting the part of the LF form gives
// (the only way before), for every fixture and corpus sample in every
// line-ending form.
func TestEmbeddedRawWireForms(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.eml"))
	if dir := corpusDirIfPresent(); dir != "" {
		more, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		files = append(files, more...)
	}
	if len(files) == 0 {
		t.Fatal("no messages")
	}
	seen := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lf := toLF(bytes.TrimPrefix(raw, utf8BOM), nil)
		if r, err := Parse(lf); err != nil || r.Embedded == nil {
			continue
		}
		crlf := toCRLF(lf)
		forms := map[string][]byte{
			"crlf":     crlf,
			"bom+crlf": append(append([]byte(nil), utf8BOM...), crlf...),
			"as is":    raw,
			// One bare LF makes the input mixed: no aliasing then.
			"mixed": append(append([]byte(nil), crlf...), "\n"...),
		}
		for name, in := range forms {
			ref, err := Parse(toLF(in, nil))
			if err != nil || ref.Embedded == nil {
				t.Fatalf("%s (%s): LF form: Parse = %v", filepath.Base(f), name, err)
			}
			want := ref.Embedded.Raw
			r, err := Parse(in)
			if err != nil || r.Embedded == nil {
				t.Errorf("%s (%s): Parse = %v, embedded %v", filepath.Base(f), name, err, r != nil && r.Embedded != nil)
				continue
			}
			if !bytes.Equal(r.Embedded.Raw, want) {
				t.Errorf("%s (%s): embedded message differs from the LF parse's (%d vs %d bytes)", filepath.Base(f), name, len(r.Embedded.Raw), len(want))
			}
		}
		seen++
	}
	if seen == 0 {
		t.Fatal("no message with an embedded part")
	}
}

// Parse of an all-CRLF report copies the message once (line endings), not
// twice: the reported message is the input's own bytes.
func TestEmbeddedRawAliasesCRLFInput(t *testing.T) {
	inner := "Received: from x (x [192.0.2.1]) by mx; Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: hi\r\n\r\n" + string(bytes.Repeat([]byte("spam spam spam\r\n"), 1000))
	raw := []byte("From: fbl@isp.example\r\nTo: abuse@x.example\r\nSubject: FBL\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nspam\r\n" +
		"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: x/1\r\nVersion: 1\r\nSource-IP: 192.0.2.1\r\n\r\n" +
		"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--b--\r\n")
	r, err := Parse(raw)
	if err != nil || r.Embedded == nil {
		t.Fatalf("Parse = %v", err)
	}
	i := bytes.Index(raw, []byte(inner))
	if got := r.Embedded.Raw; len(got) < len(inner)-2 || !bytes.HasPrefix([]byte(inner), got) || &got[0] != &raw[i] {
		t.Fatalf("embedded message is not the input's bytes at %d", i)
	}
}
