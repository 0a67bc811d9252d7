package reporter

import (
	"strings"
	"testing"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// TestReload turns a dry run into sending with another contact table, and
// refuses a reload whose DKIM key is missing without losing the settings.
func TestReload(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, false, ""), Options{})
	first := e.trapHit(t, "trap", "victim@trap.reporter.test", originIP, "x")
	e.run(t, func() bool { return e.status(t, first) == store.OutboxDryRun })

	yaml := `
hostname: reporter.test
sender: {org: Test Net, contact: abuse@reporter.test, domain: reporter.test}
contacts:
  static: [{network: "` + originNet + `", email: abuse@new-origin.test}]
` + trapChannel + smarthostYAML(d.addr, true, "")
	cfg, err := config.Parse([]byte(yaml), "next.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rep.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	bad, err := config.Parse([]byte(strings.Replace(yaml, "retry:", "dkim: {domain: reporter.test, selector: s, private_key_file: /nonexistent/dkim.pem}\n  retry:", 1)), "bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rep.Reload(bad); err == nil || !strings.Contains(err.Error(), "reporter.dkim.private_key_file") {
		t.Fatalf("reload with a missing DKIM key: %v", err)
	}

	second := e.trapHit(t, "trap", "victim@trap.reporter.test", originIP, "y")
	e.run(t, func() bool { return e.status(t, second) == store.OutboxSent })
	got := d.messages()
	if len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != "abuse@new-origin.test" {
		t.Fatalf("after reload the desk got %+v, want one report to abuse@new-origin.test", got)
	}
	if s := e.status(t, first); s != store.OutboxDryRun {
		t.Errorf("the entry settled in the dry run became %s", s)
	}
}
