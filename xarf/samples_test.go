package xarf

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func sampleFiles(t *testing.T) []string {
	t.Helper()
	needDir(t, samplesDir(), "XARF v4 samples")
	files, _ := filepath.Glob(filepath.Join(samplesDir(), "*.json"))
	if len(files) == 0 {
		t.Fatalf("no samples in %s", samplesDir())
	}
	return files
}

// TestSamples: every official v4 sample passes the schema, survives
// Unmarshal and Marshal through Report without losing a member, and fails
// the semantic checks only where its evidence hash is a placeholder.
func TestSamples(t *testing.T) {
	v := schemaValidator(t)
	for _, path := range sampleFiles(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Validate(raw); err != nil {
				t.Errorf("schema: %v", err)
			}
			var r Report
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			if r.XARFVersion == "" || r.ReportID == "" || r.Reporter == nil || r.Sender == nil || r.SourceIdentifier == "" || r.Category == "" || r.Type == "" {
				t.Errorf("core fields not in their typed slots: %+v", r)
			}
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if !SameJSON(raw, out) {
				t.Errorf("round trip changed the document:\n--- in\n%s\n--- out\n%s", raw, out)
			}
			if err := v.Validate(out); err != nil {
				t.Errorf("re-encoded document fails the schema: %v", err)
			}
			var ve *ValidationError
			if err := Validate(raw); errors.As(err, &ve) {
				for _, reason := range ve.Reasons {
					if !strings.Contains(reason, "].hash ") {
						t.Errorf("semantic check: %s", reason)
					}
				}
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSampleSpamTyped(t *testing.T) {
	needDir(t, samplesDir(), "XARF v4 samples")
	raw, err := os.ReadFile(filepath.Join(samplesDir(), "messaging-spam.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Protocol != "smtp" || r.SMTPFrom != "marketing@example.com" || r.SourcePort != 25 || len(r.Evidence) != 1 || r.Evidence[0].Hash == "" || len(r.Extra) != 0 {
		t.Errorf("typed fields not filled: %+v", r)
	}
	if err := Validate(raw); err != nil {
		t.Errorf("the spam sample's evidence hash is right, yet: %v", err)
	}
}

// TestInvalidDocument: a document broken in several ways fails with one
// readable reason per fault, from the schema and the semantic checks.
func TestInvalidDocument(t *testing.T) {
	v := schemaValidator(t)
	doc := []byte(`{
	"xarf_version": "4.2.0",
	"report_id": "not-a-uuid",
	"timestamp": "yesterday",
	"reporter": {"org": "R", "contact": "r@example.org", "domain": "example.org"},
	"sender": {"org": "S", "contact": "nobody", "domain": "example.net"},
	"source_identifier": "192.0.2.1",
	"category": "messaging",
	"type": "spam",
	"protocol": "smtp",
	"smtp_to": "redacted@redacted.invalid",
	"tags": ["Bad Tag"],
	"evidence": [{"content_type": "message/rfc822", "payload": "aGVsbG8=", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": 7}]
}`)
	err := v.Check(doc)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	all := strings.Join(ve.Reasons, "\n")
	t.Logf("reasons:\n%s", all)
	for _, want := range []string{
		"/report_id", "/timestamp", "/sender/contact", "/tags/0", // schema
		"smtp_from", "source_port", // schema (if protocol smtp) and semantic
		"smtp_to is a redaction placeholder",
		"evidence[0].size is 7 but the payload decodes to 5 bytes",
		"evidence[0].hash does not match",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no reason mentions %q", want)
		}
	}
	if len(ve.Reasons) < 9 {
		t.Errorf("only %d reasons", len(ve.Reasons))
	}
	if v.Validate([]byte(`{"xarf_version": "4.2.0"`)) == nil || Validate([]byte(`[]`)) == nil {
		t.Error("malformed JSON accepted")
	}
}

func TestValidateSemantic(t *testing.T) {
	ok := newEvidence("text/plain", "x", []byte("hello"))
	okJSON, _ := json.Marshal(ok)
	for _, c := range []struct {
		name, doc, want string
	}{
		{"consistent", `{"category":"messaging","protocol":"smtp","smtp_from":"a@b.example","source_port":25,"source_identifier":"192.0.2.1","evidence":[` + string(okJSON) + `]}`, ""},
		{"smtp without port", `{"category":"messaging","protocol":"smtp","smtp_from":"a@b.example"}`, "source_port is missing"},
		{"bad base64", `{"evidence":[{"content_type":"x","payload":"!!!"}]}`, "not valid base64"},
		{"short hash", `{"evidence":[{"content_type":"x","payload":"aGVsbG8=","hash":"md5:abcd"}]}`, "md5 needs 32"},
		{"md5 right", `{"evidence":[{"content_type":"x","payload":"aGVsbG8=","hash":"md5:5d41402abc4b2a76b9719d911017c592"}]}`, ""},
		{"empty source", `{"source_identifier":" "}`, "source_identifier is empty"},
		{"source not ip", `{"category":"messaging","source_identifier":"a_b!"}`, "neither an IP address nor a host name"},
		{"seen order", `{"first_seen":"2026-03-02T00:00:00Z","last_seen":"2026-03-01T00:00:00Z"}`, "first_seen"},
		{"placeholder from", `{"smtp_from":"r-0123456789ab@redacted.invalid"}`, "smtp_from is a redaction placeholder"},
	} {
		err := Validate([]byte(c.doc))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: want %q, got %v", c.name, c.want, err)
		}
	}
}

func TestValidateEvidenceLimit(t *testing.T) {
	big := newEvidence("message/rfc822", "", make([]byte, MaxEvidenceSize+1))
	b, _ := json.Marshal(map[string]any{"evidence": []Evidence{big}})
	if err := Validate(b); err == nil || !strings.Contains(err.Error(), "above the limit") {
		t.Errorf("oversized evidence: %v", err)
	}
}

func TestNewValidatorErrors(t *testing.T) {
	if _, err := NewValidator(t.TempDir()); err == nil {
		t.Error("empty schema dir accepted")
	}
	// Only the core schema: the master's $refs cannot be resolved, and the
	// network is never asked.
	needDir(t, schemaDir(), "XARF v4 schemas")
	dir := t.TempDir()
	core, err := os.ReadFile(filepath.Join(schemaDir(), "xarf-core.json"))
	if err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile(filepath.Join(schemaDir(), "xarf-v4-master.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "xarf-core.json"), core, 0o644)
	os.WriteFile(filepath.Join(dir, "xarf-v4-master.json"), master, 0o644)
	if _, err := NewValidator(dir); err == nil || !strings.Contains(err.Error(), "network loading is off") {
		t.Errorf("missing type schemas: %v", err)
	}
}
