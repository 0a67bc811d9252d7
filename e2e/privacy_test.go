package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/internal/leakcheck"
	"github.com/xarfd/xarfd/store"
)

// privacyConfig routes the adversarial fixtures' own recipient addresses
// to a redacting trap channel, and an ARF address to a redacting ARF
// channel, with the fixtures' configured domain and local-part redaction.
const privacyConfig = `
hostname: mx.e2e.example
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: priv
    kind: trap
    addresses: ["trap.box7@example.net", "alice+news@mail.example.org", "*@priv.e2e.example"]
    redact: {recipients: true, domains: ["trap.example.com"], local_parts: true}
  - name: privarf
    kind: arf
    addresses: ["fbl-priv@e2e.example"]
    redact: {recipients: true}
`

type fixture struct {
	name  string
	raw   []byte
	rcpts []string // envelope recipients
	check []string // addresses that must appear nowhere
}

// loadPrivacyFixtures reads redact/testdata (the redact package's
// adversarial messages: every encoded form, nested parts, ARF, UTF-16,
// malformed MIME) with their address sidecars.
func loadPrivacyFixtures(t *testing.T) []fixture {
	t.Helper()
	files, _ := filepath.Glob("../redact/testdata/*.eml")
	if len(files) < 15 {
		t.Fatalf("only %d redaction fixtures", len(files))
	}
	var fx []fixture
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		x := fixture{name: filepath.Base(f), raw: raw}
		side, err := os.Open(strings.TrimSuffix(f, ".eml") + ".addrs")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(side)
		for sc.Scan() {
			key, val, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			switch key {
			case "rcpt":
				x.rcpts = append(x.rcpts, val)
				x.check = append(x.check, val)
			case "check":
				x.check = append(x.check, val)
			}
		}
		side.Close()
		switch {
		case strings.Contains(x.name, "arf"):
			x.rcpts = []string{"fbl-priv@e2e.example"}
		case len(x.rcpts) == 0:
			x.rcpts = []string{"hit@priv.e2e.example"}
		}
		fx = append(fx, x)
	}
	return fx
}

// TestNothingLeaks sends every adversarial message over SMTP to redacting
// channels, then searches everything xarfd wrote or said for every form
// of every recipient address: the API's answers (reports, evidence,
// quarantine), the daemon's log, and the bytes of the bbolt file.
func TestNothingLeaks(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, privacyConfig)
	d := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, d)

	fixtures := loadPrivacyFixtures(t)
	var all []string
	var ids []store.ID
	for _, fx := range fixtures {
		// The daemon sees the test's connections come from loopback, which
		// counts as a relay: give each message the hop it came from.
		eol := "\n"
		if strings.Contains(string(fx.raw), "\r\n") {
			eol = "\r\n"
		}
		hop := "Received: from spam.example (spam.example [198.51.100.77]) by mx.e2e.example with ESMTP; Fri, 27 Nov 2026 10:00:00 +0000" + eol
		got, err := send(d.addr, "sender@origin.example", fx.rcpts, append([]byte(hop), fx.raw...))
		if err != nil {
			t.Fatalf("%s: %v", fx.name, err)
		}
		ids = append(ids, got...)
		all = append(all, fx.check...)
		all = append(all, fx.rcpts...)
	}

	// Let the reporter decide every entry, so that their histories hold
	// rows (withheld, dry run) when they are read below.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		waiting := 0
		for _, st := range []string{"pending", "sending"} {
			var page struct{ Entries []json.RawMessage }
			r := apiDo(t, "GET", base+"/api/v1/outbox?status="+st, "", "", nil)
			json.Unmarshal(r.body, &page)
			waiting += len(page.Entries)
		}
		if waiting == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outbox entries still undecided after 60 s", waiting)
		}
	}
	var seen [][]byte
	for _, path := range []string{"/api/v1/reports?limit=1000", "/api/v1/messages?status=quarantined&limit=1000", "/api/v1/outbox?limit=1000", "/metrics"} {
		r := apiDo(t, "GET", base+path, "", "", nil)
		if r.code != 200 {
			t.Fatalf("GET %s: %d %s", path, r.code, r.body)
		}
		seen = append(seen, r.body)
	}
	reports := 0
	for _, id := range ids {
		r := apiDo(t, "GET", base+"/api/v1/reports/"+id.String(), "", "", nil)
		if r.code == 404 {
			continue // quarantined: no report
		}
		reports++
		seen = append(seen, r.body)
		if e := apiDo(t, "GET", base+"/api/v1/reports/"+id.String()+"/evidence", "", "", nil); e.code == 200 {
			seen = append(seen, e.body)
		}
		// The entry with its attempt history.
		if o := apiDo(t, "GET", base+"/api/v1/outbox/"+id.String(), "", "", nil); o.code == 200 {
			seen = append(seen, o.body)
		}
	}
	if reports < len(fixtures)/2 {
		t.Errorf("only %d of %d messages became reports; the search would prove little", reports, len(fixtures))
	}
	d.stop()

	db, err := os.ReadFile(filepath.Join(dir, "data", store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, db, []byte(d.logs.String()))
	names := []string{"reports list", "quarantine list", "outbox", "metrics"}
	for i, b := range seen {
		where := "API answer"
		switch {
		case i < len(names):
			where = names[i]
		case i == len(seen)-2:
			where = "bbolt file"
		case i == len(seen)-1:
			where = "daemon log"
		}
		for _, l := range leakcheck.Find(b, all) {
			t.Errorf("%s: %s", where, l)
		}
	}
	// The search must be able to see the data: the file holds reports.
	var probe struct{ Reports []json.RawMessage }
	json.Unmarshal(seen[0], &probe)
	if len(probe.Reports) != reports {
		t.Errorf("listing shows %d reports, single gets found %d", len(probe.Reports), reports)
	}
}
