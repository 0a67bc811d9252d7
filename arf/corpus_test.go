package arf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sharedCorpus returns the shared ARF corpus directory, skipping the test
// when it is absent (the corpus is not part of this repository).
func sharedCorpus(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("XARFD_SHARED")
	if base == "" {
		base = filepath.Join("..", "..", "shared")
	}
	dir := filepath.Join(base, "testdata", "arf")
	if _, err := os.Stat(filepath.Join(dir, "truth.json")); err != nil {
		tb.Skipf("shared corpus not found at %s; set XARFD_SHARED", dir)
	}
	return dir
}

type truthSample struct {
	Category             string                     `json:"category"`
	ReadFromFile         []string                   `json:"read_from_file"`
	ArrivalDate          *string                    `json:"arrival_date"`
	ArrivalDateField     *string                    `json:"arrival_date_field"`
	FeedbackType         *string                    `json:"feedback_type"`
	UserAgent            *string                    `json:"user_agent"`
	Version              *string                    `json:"version"`
	OriginalMailFrom     *string                    `json:"original_mail_from"`
	OriginalRcptTo       []string                   `json:"original_rcpt_to"`
	ReportedDomain       []string                   `json:"reported_domain"`
	SourceIP             *string                    `json:"source_ip"`
	SourceIPNormalized   *string                    `json:"source_ip_normalized"`
	ThirdPart            *string                    `json:"third_part"`
	OuterClosingBoundary *bool                      `json:"outer_closing_boundary_present"`
	Inferred             map[string]json.RawMessage `json:"inferred"`
	Format               struct {
		UTF8BOM         bool    `json:"utf8_bom"`
		LineEndings     string  `json:"line_endings"`
		OuterType       *string `json:"outer_content_type"`
		ReportTypeParam *string `json:"report_type_param"`
	} `json:"format"`
}

// truthClass maps truth.json's categories to ours. arf-embedded (ARF text
// only inside another attachment) maps to ClassARFMalformed: the facts are
// usable but the form is not a report; the corpus has no such sample, our
// fixtures cover it.
var truthClass = map[string]Class{
	"arf":           ClassARF,
	"arf-malformed": ClassARFMalformed,
	"arf-embedded":  ClassARFMalformed,
	"jmrp":          ClassJMRP,
	"negative":      ClassNotReport,
}

func loadTruth(t *testing.T, dir string) map[string]truthSample {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Samples map[string]truthSample `json:"samples"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("truth.json: %v", err)
	}
	if len(doc.Samples) == 0 {
		t.Fatal("truth.json has no samples")
	}
	return doc.Samples
}

func TestCorpus(t *testing.T) {
	dir := sharedCorpus(t)
	truth := loadTruth(t, dir)
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) == 0 {
		t.Fatalf("no .eml files in %s", dir)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := truth[name]
			if !ok {
				t.Fatalf("%s has no entry in truth.json", name)
			}
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Parse(raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkTruth(t, r, want)
		})
	}
}

func optField(r *Report, name string) *string {
	v, ok := r.Field(name)
	if !ok {
		return nil
	}
	return &v
}

func str(p *string) string {
	if p == nil {
		return "<absent>"
	}
	return "\"" + *p + "\""
}

func checkTruth(t *testing.T, r *Report, want truthSample) {
	t.Helper()
	if got, exp := r.Class, truthClass[want.Category]; got != exp {
		t.Errorf("class = %s (%s), want %s (truth %s)", got, r.Reason, exp, want.Category)
	}
	eqStr := func(field string, got, exp *string) {
		if (got == nil) != (exp == nil) || got != nil && *got != *exp {
			t.Errorf("%s = %s, want %s", field, str(got), str(exp))
		}
	}
	// Every truth field, listed in read_from_file or not: unlisted ones are
	// null in truth.json and must then be absent here.
	var ad, adf *string
	if r.ArrivalDate != nil {
		ad, adf = &r.ArrivalDate.Raw, &r.ArrivalDate.Field
	}
	eqStr("arrival_date", ad, want.ArrivalDate)
	if r.ArrivalDate != nil && !r.ArrivalDate.Parsed {
		t.Errorf("arrival date %q not parsed", r.ArrivalDate.Raw)
	}
	eqStr("arrival_date_field", adf, want.ArrivalDateField)
	var ft *string
	if _, ok := r.Field("Feedback-Type"); ok {
		ft = &r.FeedbackType
	}
	eqStr("feedback_type", ft, want.FeedbackType)
	eqStr("user_agent", optField(r, "User-Agent"), want.UserAgent)
	eqStr("version", optField(r, "Version"), want.Version)
	eqStr("original_mail_from", optField(r, "Original-Mail-From"), want.OriginalMailFrom)
	if !reflect.DeepEqual(r.OriginalRcptTo, want.OriginalRcptTo) {
		t.Errorf("original_rcpt_to = %q, want %q", r.OriginalRcptTo, want.OriginalRcptTo)
	}
	if !reflect.DeepEqual(r.ReportedDomain, want.ReportedDomain) {
		t.Errorf("reported_domain = %q, want %q", r.ReportedDomain, want.ReportedDomain)
	}
	var sip, sipn *string
	if r.SourceIP != nil {
		sip = &r.SourceIP.Raw
		if r.SourceIP.Addr.IsValid() {
			s := r.SourceIP.Addr.String()
			sipn = &s
		}
	}
	eqStr("source_ip", sip, want.SourceIP)
	eqStr("source_ip_normalized", sipn, want.SourceIPNormalized)
	if want.SourceIPNormalized != nil && (r.Origin == nil || r.Origin.Inferred || r.Origin.IP.String() != *want.SourceIPNormalized) {
		t.Errorf("origin = %+v, want stated %s", r.Origin, *want.SourceIPNormalized)
	}
	var tp *string
	if r.ThirdPart != "" {
		tp = &r.ThirdPart
	}
	eqStr("third_part", tp, want.ThirdPart)

	// Format facts that our warnings must reflect.
	if want.OuterClosingBoundary != nil && r.HasWarning(WarnNoClosingBoundary) == *want.OuterClosingBoundary {
		t.Errorf("no-closing-boundary warning = %v, truth closing boundary present = %v", r.HasWarning(WarnNoClosingBoundary), *want.OuterClosingBoundary)
	}
	if r.HasWarning(WarnBOM) != want.Format.UTF8BOM {
		t.Errorf("BOM warning = %v, truth utf8_bom = %v", r.HasWarning(WarnBOM), want.Format.UTF8BOM)
	}
	if r.HasWarning(WarnBareCR) != (want.Format.LineEndings == "CR") {
		t.Errorf("bare-CR warning = %v, truth line_endings = %s", r.HasWarning(WarnBareCR), want.Format.LineEndings)
	}
	if r.Class == ClassARF && want.Format.OuterType != nil && *want.Format.OuterType == "multipart/report" &&
		r.HasWarning(WarnMissingReportType) != (want.Format.ReportTypeParam == nil) {
		t.Errorf("missing-report-type warning = %v, truth report_type_param = %v", r.HasWarning(WarnMissingReportType), want.Format.ReportTypeParam)
	}

	for field, rawInf := range want.Inferred {
		var inf struct {
			How   string          `json:"how"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(rawInf, &inf); err != nil {
			t.Fatalf("inferred %s: %v", field, err)
		}
		var vals []string
		var one string
		if json.Unmarshal(inf.Value, &one) == nil {
			vals = []string{one}
		} else if err := json.Unmarshal(inf.Value, &vals); err != nil {
			t.Fatalf("inferred %s value: %v", field, err)
		}
		switch field {
		case "source_ip":
			if r.Origin == nil || !r.Origin.Inferred || r.Origin.IP.String() != vals[0] {
				t.Errorf("inferred origin = %+v, want %s (%s)", r.Origin, vals[0], inf.How)
			}
		case "third_part":
			if r.Embedded == nil || r.Embedded.ContentType != vals[0] {
				t.Errorf("embedded = %v, want %s", r.Embedded, vals[0])
			}
		default:
			got, how := r.InferredValues(strings.ReplaceAll(field, "_", "-"))
			if !reflect.DeepEqual(got, vals) {
				t.Errorf("inferred %s = %q (%s), want %q (%s)", field, got, how, vals, inf.How)
			}
		}
	}
}
