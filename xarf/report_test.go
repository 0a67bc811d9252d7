package xarf

import (
	"bytes"
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

// MarshalJSON splices large base64 payloads in after encoding: the
// document must be exactly what the encoder writes with them in place,
// whatever the other evidence items hold.
func TestMarshalJSONSplicedPayloads(t *testing.T) {
	big := strings.Repeat("QUJD", 700) + "RA=="
	r := Report{
		XARFVersion: Version, ReportID: "r", Description: `a "payload":"" in text`,
		Evidence: []Evidence{
			{ContentType: "message/rfc822", Payload: big},
			{ContentType: "text/plain", Payload: ""},
			{ContentType: "text/plain", Payload: strings.Repeat(`not "base64" <&>`, 100)},
			{ContentType: "text/plain", Payload: "c21hbGw="},
			{ContentType: "message/rfc822", Description: `"payload":""`, Payload: big[4:] + "QUJD"},
		},
		Tags: []string{`"payload":""`},
	}
	got, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(plain(r)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
		t.Errorf("MarshalJSON =\n%.300s\nwant\n%.300s", got, want.Bytes())
	}
	if r.Evidence[0].Payload != big {
		t.Error("MarshalJSON changed the report's evidence")
	}
}
