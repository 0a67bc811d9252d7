package xarf

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/arf"
)

type truthEntry struct {
	Category           string  `json:"category"`
	FeedbackType       *string `json:"feedback_type"`
	SourceIPNormalized *string `json:"source_ip_normalized"`
	Inferred           map[string]struct {
		How   string          `json:"how"`
		Value json.RawMessage `json:"value"`
	} `json:"inferred"`
}

func loadTruth(t *testing.T) map[string]truthEntry {
	t.Helper()
	needDir(t, corpusDir(), "shared ARF corpus") // before reading from it
	b, err := os.ReadFile(filepath.Join(corpusDir(), "truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Samples map[string]truthEntry `json:"samples"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Samples
}

// expectedOrigin is truth's Source-IP, else its inferred source_ip, else "".
func (e truthEntry) expectedOrigin() string {
	if e.SourceIPNormalized != nil {
		return *e.SourceIPNormalized
	}
	if in, ok := e.Inferred["source_ip"]; ok {
		var s string
		if json.Unmarshal(in.Value, &s) == nil {
			return s
		}
	}
	return ""
}

func corpusFiles(t *testing.T) []string {
	t.Helper()
	needDir(t, corpusDir(), "shared ARF corpus")
	files, err := filepath.Glob(filepath.Join(corpusDir(), "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .eml files in %s", corpusDir())
	}
	return files
}

func corpusInput(raw []byte) Input {
	return Input{
		ReportID: testID, Received: testReceived,
		Reporter: testReporter, Sender: testSender,
		RecipientsRedacted: true, Message: raw,
	}
}

// TestCorpus converts every report of the shared corpus, validates each
// document against the master schema and the semantic checks, and compares
// the origin with truth.json.
func TestCorpus(t *testing.T) {
	truth := loadTruth(t)
	produced := 0
	for _, path := range corpusFiles(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tr, ok := truth[name]
			if !ok {
				t.Fatalf("%s has no entry in truth.json", name)
			}
			rep, err := arf.Parse(raw)
			if err != nil {
				t.Fatalf("arf.Parse: %v", err)
			}
			doc, err := FromARF(rep, corpusInput(raw))
			if rep.Class == arf.ClassNotReport {
				if !errors.Is(err, ErrNotReport) {
					t.Fatalf("not-a-report: want ErrNotReport, got %v", err)
				}
				return
			}
			want := tr.expectedOrigin()
			ft := ""
			if tr.FeedbackType != nil {
				ft = *tr.FeedbackType
			}
			switch {
			case ft == "auth-failure" && !errors.Is(err, ErrNotAbuse):
				// RFC 6591 reports say a check failed, not that the
				// message is spam: never a spam report.
				t.Fatalf("auth-failure report converted (%v): %+v", err, doc)
			case errors.Is(err, ErrNotAbuse):
				if ft != "not-spam" && ft != "opt-out" && ft != "opt-out-list" && ft != "miscategorized" && ft != "auth-failure" &&
					!strings.HasPrefix(name, "neg-exim-dmarc") {
					t.Fatalf("ErrNotAbuse for feedback type %q: %v", ft, err)
				}
				return
			case errors.Is(err, ErrNoOrigin):
				if want != "" {
					t.Fatalf("truth has origin %s but conversion found none: %v", want, err)
				}
				return
			case err != nil:
				t.Fatalf("FromARF: %v", err)
			}
			produced++
			b := marshal(t, doc)
			mustValid(t, name, b)
			if want != "" && doc.SourceIdentifier != want {
				t.Errorf("source_identifier = %s, truth says %s", doc.SourceIdentifier, want)
			}
			if want == "" {
				// No origin in truth: it can only come from arf's inference,
				// and must be tagged as inferred.
				if rep.Origin == nil || doc.SourceIdentifier != rep.Origin.IP.String() || !hasTagPrefix(doc.Tags, "origin:inferred-") {
					t.Errorf("origin %s not from arf's inferred origin %+v (tags %v)", doc.SourceIdentifier, rep.Origin, doc.Tags)
				}
			}
			if doc.SMTPTo != "" {
				t.Errorf("smtp_to %q set although recipients are redacted", doc.SMTPTo)
			}
			for _, a := range rep.RecipientAddresses() {
				if strings.Contains(strings.ToLower(doc.Description), strings.ToLower(a)) {
					t.Errorf("description names recipient %s", a)
				}
			}
		})
	}
	t.Logf("%d documents produced and validated", produced)
	if produced == 0 && !t.Failed() {
		t.Fatal("no document produced from the corpus")
	}
}

func hasTagPrefix(tags []string, p string) bool {
	for _, t := range tags {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}
