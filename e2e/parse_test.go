package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/xarf"
)

func sharedDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("XARFD_SHARED")
	if dir == "" {
		dir = "../../shared"
	}
	if _, err := os.Stat(filepath.Join(dir, "testdata", "arf", "truth.json")); err != nil {
		t.Skipf("shared corpus not found at %s; set XARFD_SHARED", dir)
	}
	return dir
}

// TestParseCorpus runs `xarfd parse` over the whole shared corpus: one
// JSON line per file, every document valid against the official schema,
// an error line for every file that yields no report, exit status 1.
func TestParseCorpus(t *testing.T) {
	shared := sharedDir(t)
	v, err := xarf.NewValidator(filepath.Join(shared, "xarf", "xarf-spec", "schemas", "v4"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(shared, "testdata", "arf", "*.eml"))
	cmd := exec.Command(binary, append([]string{"parse"}, files...)...)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v (want 1: the corpus has non-reports)", err)
	}
	var truth struct {
		Samples map[string]struct {
			FeedbackType *string `json:"feedback_type"`
		} `json:"samples"`
	}
	if b, err := os.ReadFile(filepath.Join(shared, "testdata", "arf", "truth.json")); err != nil || json.Unmarshal(b, &truth) != nil {
		t.Fatalf("reading truth.json: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(files) {
		t.Fatalf("%d lines for %d files", len(lines), len(files))
	}
	reports, errs := 0, 0
	for i, line := range lines {
		// Every line names its file: a XARF document with "file" as a
		// member, or {"file":…,"error":…}.
		var probe struct {
			File   string `json:"file"`
			Error  string `json:"error"`
			Type   string `json:"type"`
			Report json.RawMessage
		}
		probe.Report = json.RawMessage(line)
		if err := json.Unmarshal([]byte(line), &probe); err != nil {
			t.Fatalf("line %d is not JSON: %v", i, err)
		}
		if probe.File != files[i] {
			t.Errorf("line %d names %q, want %q", i, probe.File, files[i])
		}
		if (probe.Error != "") == (probe.Type != "") {
			t.Errorf("line %d: want exactly one of an error and a XARF document: %.200s", i, line)
		}
		if probe.Error != "" {
			errs++
			continue
		}
		reports++
		if ft := truth.Samples[filepath.Base(files[i])].FeedbackType; ft != nil && *ft == "auth-failure" {
			t.Errorf("%s: an authentication failure report (RFC 6591) became a report", filepath.Base(files[i]))
		}
		if err := v.Validate(probe.Report); err != nil {
			t.Errorf("%s: invalid XARF: %v", filepath.Base(files[i]), err)
		}
	}
	t.Logf("%d reports, %d errors", reports, errs)
	// The rest are not reports, have no origin, or allege no abuse (the
	// 8 authentication failure reports among them).
	if reports < 30 || errs == 0 {
		t.Errorf("%d reports and %d errors from %d files", reports, errs, len(files))
	}
}

// TestParseTrapWithEnvelope: -peer makes the peer the origin, -rcpt is
// redacted by the trap channel's policy and appears nowhere in the output.
func TestParseTrapWithEnvelope(t *testing.T) {
	dir := t.TempDir()
	msg := filepath.Join(dir, "trap.eml")
	os.WriteFile(msg, []byte("Received: from x (x [198.51.100.20]) by mx; Fri, 27 Nov 2026 10:00:00 +0000\r\nTo: Hidden.Trap@trap.localhost\r\nSubject: win\r\n\r\nunsubscribe: https://u.example/?e=hidden.trap%40trap.localhost\r\n"), 0o600)
	cmd := exec.Command(binary, "parse", "-rcpt", "hidden.trap@trap.localhost", "-peer", "203.0.113.50:41000", "-mail-from", "bulk@spam.example", "-")
	cmd.Stdin, _ = os.Open(msg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, out)
	}
	var line struct {
		File string `json:"file"`
	}
	var doc xarf.Report
	for _, v := range []any{&line, &doc} {
		if err := json.NewDecoder(bufio.NewReader(strings.NewReader(string(out)))).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	if line.File != "-" {
		t.Errorf("file = %q, want - (stdin)", line.File)
	}
	if doc.SourceIdentifier != "203.0.113.50" || doc.SourcePort != 41000 || doc.EvidenceSource != "spamtrap" || doc.SMTPFrom != "bulk@spam.example" {
		t.Errorf("report = %+v", doc)
	}
	if strings.Contains(strings.ToLower(string(out)), "hidden.trap") {
		t.Errorf("the trap address leaked into the output")
	}
	if len(doc.Evidence) == 0 {
		t.Fatal("no evidence")
	}
	for _, ev := range doc.Evidence {
		b, err := base64.StdEncoding.DecodeString(ev.Payload)
		if err != nil || strings.Contains(strings.ToLower(string(b)), "hidden.trap") || !strings.Contains(string(b), "X-Xarfd-Redacted:") {
			t.Errorf("evidence not redacted (%v): %q", err, b)
		}
	}
	// Without -peer the message counts as forwarded: origin from Received.
	cmd = exec.Command(binary, "parse", "-channel", "trap", msg)
	out, err = cmd.Output()
	if err != nil || !strings.Contains(string(out), `"source_identifier":"198.51.100.20"`) {
		t.Errorf("forwarded origin: %v %s", err, out)
	}
}
