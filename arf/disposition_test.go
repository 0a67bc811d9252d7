package arf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDispositionCorpus decides every file of the shared corpus and
// checks the decision against truth.json's feedback type: DMARC and
// other authentication failure reports (RFC 6591) are never reported as
// spam, and neither is anything that does not allege abuse.
func TestDispositionCorpus(t *testing.T) {
	dir := sharedCorpus(t)
	counts := map[Action]int{}
	for name, s := range loadTruth(t, dir) {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d := r.Disposition()
		counts[d.Action]++
		ft := ""
		if s.FeedbackType != nil {
			ft = *s.FeedbackType
		}
		var want Action
		switch {
		case s.Category == "negative":
			want = ActionQuarantine
		case ft == "abuse" || s.Category == "jmrp":
			want = ActionReport
		case ft == "auth-failure" || strings.HasPrefix(name, "neg-exim-dmarc"):
			// The Exim DMARC forensic report has no feedback part: its
			// Subject says what it is.
			want = ActionQuarantine
		case ft == "opt-out":
			want = ActionQuarantine
		default:
			t.Fatalf("%s: no expectation for category %s feedback type %q", name, s.Category, ft)
		}
		if d.Action != want {
			t.Errorf("%s (%s, %q): %s (%s), want %s", name, s.Category, ft, d.Action, d.Reason, want)
		}
		if d.Action != ActionReport && d.Reason == "" {
			t.Errorf("%s: %s without a reason", name, d.Action)
		}
		if ft == "auth-failure" && !strings.Contains(d.Reason, "RFC 6591") {
			t.Errorf("%s: reason %q does not say it is an authentication failure report", name, d.Reason)
		}
	}
	t.Logf("%v", counts)
}

// TestDispositionTable is the table of docs/reporting.md, on our own
// fixtures (each carries one feedback type) and on bare reports.
func TestDispositionTable(t *testing.T) {
	for file, want := range map[string]Action{
		"01-complete-lf":          ActionReport,     // abuse
		"02-crlf":                 ActionReport,     // fraud
		"03-bare-cr":              ActionReport,     // virus
		"04-bom":                  ActionQuarantine, // other
		"05-field-case":           ActionRetract,    // not-spam
		"07-multipart-mixed":      ActionQuarantine, // opt-out
		"11-auth-failure":         ActionQuarantine, // auth-failure
		"15-jmrp":                 ActionReport,     // JMRP implies abuse
		"23-dsn":                  ActionQuarantine, // not a report
		"feedback/abuse":          ActionReport,
		"feedback/not-spam":       ActionRetract,
		"feedback/dmarc-forensic": ActionQuarantine, // no feedback part; the Subject says DMARC
		"feedback/unknown-type":   ActionQuarantine,
	} {
		raw, err := os.ReadFile(filepath.Join(fixtureDir, file+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if d := r.Disposition(); d.Action != want {
			t.Errorf("%s (feedback type %q): %s (%s), want %s", file, d.FeedbackType, d.Action, d.Reason, want)
		}
	}
	long := strings.Repeat("x", 500)
	r := &Report{Class: ClassARF, FeedbackType: long}
	if d := r.Disposition(); d.Action != ActionQuarantine || len(d.Reason) > 200 || !strings.Contains(d.Reason, "unknown feedback-type") {
		t.Errorf("unknown type: %+v", d)
	}
}
