package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// The document filters of `xarfd reports` reach the API's origin,
// evidence_source and q, and the command follows the cursor through the
// empty page that a scan bounded by store.ScanBound gives when the
// matches are older than that many reports.
func TestReportsDocumentFilters(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`
hostname: mx.test.example
data_dir: `+dir+`
sender: {org: T, contact: abuse@test.example, domain: test.example}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@test.example"]}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	want := map[string][]string{} // filter -> ids, newest first
	var entries []store.Entry
	add := func(evsrc, tag, subject string, keys ...string) {
		id, err := store.NewID()
		if err != nil {
			t.Fatal(err)
		}
		doc := fmt.Sprintf(`{"report_id":%q,"evidence_source":%q,"tags":[%q],"subject":%q}`, id, evsrc, tag, subject)
		entries = append(entries, store.Entry{Report: &store.Report{ID: id, Channel: "fbl", Via: "smtp",
			SourceIP: netip.MustParseAddr("198.51.100.1"), XARF: json.RawMessage(doc)}})
		for _, k := range keys {
			want[k] = append([]string{id.String()}, want[k]...)
		}
	}
	// The matches first (oldest), then more than a scan's bound of others.
	add("spamtrap", "origin:received-chain", "Cheap Pills", "trap", "chain", "pills")
	add("user_complaint", "origin:inferred-received-chain", "hello", "chain")
	add("spamtrap", "origin:smtp-peer", "more PILLS today", "trap", "pills")
	for i := 0; i < store.ScanBound+10; i++ {
		add("user_complaint", "origin:source-ip", "newsletter", "all")
	}
	if err := st.Put(entries); err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Config: cfg, Store: st, Logger: zerolog.Nop()})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	for _, tc := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"evidence source", []string{"-evidence-source", "spamtrap"}, want["trap"]},
		{"origin", []string{"-origin", "received-chain"}, want["chain"]},
		{"text", []string{"-text", "pills"}, want["pills"]},
		{"all three", []string{"-text", "pills", "-origin", "smtp-peer", "-evidence-source", "spamtrap"}, want["pills"][:1]},
		{"limit", []string{"-evidence-source", "user_complaint", "-limit", "3"}, want["all"][:3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(append([]string{"reports", "-api", ts.URL}, tc.flags...), &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var d struct {
					ReportID string `json:"report_id"`
				}
				if line != "" && json.Unmarshal([]byte(line), &d) == nil {
					got = append(got, d.ReportID)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("printed %v, want %v", got, tc.want)
			}
		})
	}

	// A value the API refuses: the command says which parameter.
	var out, errb bytes.Buffer
	if code := run([]string{"reports", "-api", ts.URL, "-origin", "Not A Method"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "origin") {
		t.Errorf("bad -origin: exit %d, %q", code, errb.String())
	}
}
