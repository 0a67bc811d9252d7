package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/api"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// `xarfd cases` follows next_cursor past the API's largest page, with its
// filters on every page, and stops at -limit.
func TestCasesFollowsCursor(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(`
hostname: mx.test.example
data_dir: `+dir+`
sender: {org: T, contact: abuse@test.example, domain: test.example}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@test.example"], uses: [own, store]}
own_networks: ["192.0.2.0/24"]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// More than two of the API's pages (store.MaxLimit) of open cases.
	const n = 2*store.MaxLimit + 301
	want := map[string][]string{} // state -> ids, newest first
	err = st.UpdateCases(store.ID{}, func(tx *store.CaseTx) error {
		for i := range n {
			id, err := store.NewID()
			if err != nil {
				return err
			}
			state := store.CaseOpen
			if i%5 == 0 {
				state = store.CaseResolved
			}
			if err := tx.Put(&store.Case{ID: id, Key: fmt.Sprintf("ip:192.0.2.%d", i%250), State: state}); err != nil {
				return err
			}
			want[state] = append([]string{id.String()}, want[state]...)
			want[""] = append([]string{id.String()}, want[""]...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api.New(api.Options{Config: cfg, Store: st, Logger: zerolog.Nop()}).Handler())
	t.Cleanup(ts.Close)

	for _, tc := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"all", nil, want[""]},
		{"open", []string{"-state", "open"}, want[store.CaseOpen]},
		{"resolved", []string{"-state", "resolved"}, want[store.CaseResolved]},
		{"limit across pages", []string{"-state", "open", "-limit", "1500"}, want[store.CaseOpen][:1500]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(append([]string{"cases", "-api", ts.URL}, tc.flags...), &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var c struct{ ID, State string }
				if err := json.Unmarshal([]byte(line), &c); err != nil {
					t.Fatalf("line %q: %v", line, err)
				}
				got = append(got, c.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("printed %d cases, want %d (first %v, want %v)", len(got), len(tc.want), got[:min(3, len(got))], tc.want[:min(3, len(tc.want))])
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run([]string{"cases", "-api", ts.URL, "-state", "closed"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "state") {
		t.Errorf("bad -state: exit %d, %q", code, errb.String())
	}
}
