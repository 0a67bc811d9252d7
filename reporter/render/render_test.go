package render

import (
	"bytes"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/xarf"
)

// TestWhatSaysFraudAndVirus: a fraud or virus complaint is messaging/spam
// in XARF, but the subject and text say what the recipient alleged.
func TestWhatSaysFraudAndVirus(t *testing.T) {
	for tag, want := range map[string]string{
		"feedback-type:fraud": "fraud or phishing reported by its recipient",
		"feedback-type:virus": "a virus or malware reported by its recipient",
		"feedback-type:abuse": "spam reported by its recipient",
	} {
		rep := &xarf.Report{EvidenceSource: "user_complaint", Tags: []string{"fbl:arf", tag}, SourceIdentifier: "192.88.99.10", Timestamp: "2026-11-27T10:00:00Z"}
		if got := what(rep); got != want {
			t.Errorf("%s: %q, want %q", tag, got, want)
		}
		if s := subjectOf(rep); !strings.Contains(s, want) {
			t.Errorf("%s: subject %q", tag, s)
		}
	}
}

func testMail(format string) *Mail {
	doc := []byte(`{"xarf_version":"4.0.0","timestamp":"2026-11-27T10:00:00Z","reporter":{"org":"Example","contact":"abuse@xarfd.example","domain":"xarfd.example"},` +
		`"source_identifier":"192.88.99.10","category":"messaging","type":"spam","evidence_source":"spamtrap"}`)
	return &Mail{Format: format, From: "reports@xarfd.example", To: []string{"abuse@isp.example"}, Hostname: "xarfd.example",
		Org: "Example", Channel: "trap", UserAgent: "xarfd/test", Report: doc,
		Evidence: []byte("Received: from spam.example ([192.88.99.10])\r\nFrom: spam@spam.example\r\nSubject: buy\r\n\r\nbuy now\r\n"),
		EntryID:  "0190-test", Count: 3, Boundary: "b1"}
}

// TestRenderARF: the ARF form is RFC 5965 feedback our own parser reads
// back with the source, the incident count and the evidence.
func TestRenderARF(t *testing.T) {
	out, err := testMail(FormatARF).Render()
	if err != nil {
		t.Fatal(err)
	}
	if out.MessageID != "<xarfd.0190-test@xarfd.example>" {
		t.Errorf("Message-ID %q", out.MessageID)
	}
	rep, err := arf.Parse(out.Bytes)
	if err != nil {
		t.Fatalf("ARF does not parse: %v\n%s", err, out.Bytes)
	}
	if rep.SourceIP == nil || rep.SourceIP.Addr.String() != "192.88.99.10" || rep.Incidents != 3 {
		t.Errorf("feedback: source %+v, incidents %d", rep.SourceIP, rep.Incidents)
	}
	if !bytes.Contains(out.Bytes, []byte("buy now")) {
		t.Error("evidence missing")
	}
}

// TestRenderRefusesHeaderInjection: addresses go into header fields, so
// one with a line break is refused rather than written.
func TestRenderRefusesHeaderInjection(t *testing.T) {
	for _, format := range []string{FormatXARF, FormatARF} {
		m := testMail(format)
		m.To = []string{"abuse@isp.example\r\nBcc: x@y.example"}
		if out, err := m.Render(); err == nil {
			t.Errorf("%s: rendered %q", format, out.Bytes)
		}
		if _, err := testMail(format).Render(); err != nil {
			t.Errorf("%s: %v", format, err)
		}
	}
}
