package api

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReportDocumentFilters(t *testing.T) {
	e := newEnv(t, false, nil)
	submit := func(channel string, body []byte) string {
		t.Helper()
		r := e.do("POST", "/api/v1/channels/"+channel+"/messages", "", "message/rfc822", body)
		var out struct{ ID string }
		r.json(t, &out)
		if r.code != 202 {
			t.Fatalf("submit: %d %s", r.code, r.body)
		}
		return out.ID
	}
	fixture, err := os.ReadFile(filepath.Join("..", "arf", "testdata", "01-complete-lf.eml"))
	if err != nil {
		t.Fatal(err)
	}
	complaint := submit("fbl", fixture)     // Source-IP: origin:source-ip, user_complaint
	trap := submit("plain", trapBody("m1")) // forwarded: origin:inferred-received-chain, spamtrap
	list := func(q string) []string {
		t.Helper()
		r := e.get("/api/v1/reports?"+q, "")
		if r.code != 200 {
			t.Fatalf("%s: %d %s", q, r.code, r.body)
		}
		var l listing
		r.json(t, &l)
		ids := reportIDs(t, l.Reports)
		slices.Sort(ids)
		return ids
	}
	for _, c := range []struct {
		q    string
		want []string
	}{
		{"origin=source-ip", []string{complaint}},
		{"origin=received-chain", []string{trap}},
		{"origin=inferred-received-chain&channel=plain", []string{trap}},
		{"origin=smtp-peer", nil},
		{"evidence_source=spamtrap", []string{trap}},
		{"evidence_source=user_complaint&origin=source-ip", []string{complaint}},
		{"q=" + url.QueryEscape("CHEAP Pills"), []string{complaint}},
		{"q=" + url.QueryEscape("M1@spam.EXAMPLE"), []string{trap}},
		{"q=nothing-like-this", nil},
	} {
		if got := list(c.q); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.q, got, c.want)
		}
	}
	for _, q := range []string{"origin=Source-IP", "origin=" + url.QueryEscape("a b"), "evidence_source=" + url.QueryEscape("x\"y"),
		"q=" + url.QueryEscape(string(make([]byte, 201))) + "x", "q=%ff", "q=a&q=b"} {
		if r := e.get("/api/v1/reports?"+q, ""); r.code != 400 {
			t.Errorf("%s: %d, want 400", q, r.code)
		}
	}
}
