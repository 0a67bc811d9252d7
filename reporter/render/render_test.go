package render

import (
	"strings"
	"testing"

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
