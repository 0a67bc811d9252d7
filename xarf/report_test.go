package xarf

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestReportExtra(t *testing.T) {
	in := `{"xarf_version":"4.2.0","description":"","confidence":0,"tags":[],"reporter":{"org":"x"},
		"evidence":[{"content_type":"a","payload":"","extra":1}],"source_port":"25","spam_indicators":{},
		"subject":"a<b>&c","first_seen":"2026-03-01T00:00:00Z","nested":{"b":[1,2.50,{"c":null}]}}`
	var r Report
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"description", "confidence", "tags", "reporter", "evidence", "source_port", "first_seen", "nested"} {
		if _, ok := r.Extra[k]; !ok {
			t.Errorf("%s should stay in Extra", k)
		}
	}
	if r.XARFVersion != "4.2.0" || r.SpamIndicators == nil || r.Subject != "a<b>&c" {
		t.Errorf("typed fields: %+v", r)
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !SameJSON([]byte(in), out) {
		t.Errorf("round trip:\n%s\n%s", in, out)
	}
	// A typed field that is set wins over Extra.
	r.Extra["subject"] = json.RawMessage(`"old"`)
	r.Subject = "new"
	out, _ = json.Marshal(r)
	if strings.Contains(string(out), `"old"`) || strings.Count(string(out), `"subject"`) != 1 {
		t.Errorf("typed field should win: %s", out)
	}
	r.Extra["bad"] = json.RawMessage(`{`)
	if _, err := json.Marshal(r); err == nil {
		t.Error("invalid Extra member accepted")
	}
	if err := json.Unmarshal([]byte(`null`), &r); err == nil {
		t.Error("null accepted as a report")
	}
	if SameJSON([]byte(`{"a":1}`), []byte(`{"a":1,"b":2}`)) || !SameJSON([]byte(`[1.0,{"x":"y"}]`), []byte(`[1, {"x":"y"}]`)) {
		t.Error("SameJSON")
	}
}
