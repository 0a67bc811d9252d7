package arf

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json golden files")

const fixtureDir = "testdata"

// golden is what a fixture's .json file records: the report plus the
// derived recipient list.
type golden struct {
	Report     *Report  `json:"report"`
	Recipients []string `json:"recipients"`
}

// fixtureChecks state, independently of the golden files, the fact each
// fixture exists to prove, so that a careless -update cannot bless a
// regression.
var fixtureChecks = map[string]func(t *testing.T, r *Report){
	"01-complete-lf": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "source port", r.SourcePort, 41234)
		eq(t, "incidents", r.Incidents, 3)
		eq(t, "reporting-mta", r.ReportingMTA, "dns; mx.isp.example")
		eq(t, "rcpt", strings.Join(r.OriginalRcptTo, ","), "<alice@isp.example>,bob@isp.example")
		eq(t, "domains", strings.Join(r.ReportedDomain, ","), "sender.example,sender2.example")
		eq(t, "unknown", len(r.Unknown), 1)
		eq(t, "origin", r.Origin.IP.String()+" "+r.Origin.Method, "93.184.216.34 source-ip")
		eq(t, "origin port", r.Origin.Port, 41234)
		eq(t, "arrival", r.ArrivalDate.Time.UTC().Format("2006-01-02T15:04:05Z"), "2025-01-06T08:59:58Z")
		eq(t, "recipients", strings.Join(r.RecipientAddresses(), ","), "alice@isp.example,bob@isp.example,dave@isp.example,carol@isp.example")
		eq(t, "warnings", len(r.Warnings), 0)
	},
	"02-crlf": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "type", r.FeedbackType, "fraud")
		eq(t, "crlf raw", bytes.Contains(r.Embedded.Raw, []byte("\r\n")), true)
		eq(t, "warnings", len(r.Warnings), 0)
	},
	"03-bare-cr": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "type", r.FeedbackType, "virus")
		eq(t, "bare-cr", r.HasWarning(WarnBareCR), true)
		eq(t, "embedded subject", r.Embedded.Header.Decoded("Subject"), "hi")
	},
	"04-bom": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "type", r.FeedbackType, "other")
		eq(t, "bom", r.HasWarning(WarnBOM), true)
		eq(t, "from", r.Header.Decoded("From"), "fbl@isp.example")
	},
	"05-field-case": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "type", r.FeedbackType, "not-spam")
		eq(t, "ip", r.SourceIP.Addr.String(), "93.184.216.34")
		eq(t, "recipients", strings.Join(r.RecipientAddresses(), ","), "Erin@ISP.example")
	},
	"06-folded-empty": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		v, ok := r.Field("Original-Mail-From")
		eq(t, "empty mail-from present", ok && v == "", true)
		eq(t, "auth-results", r.AuthenticationResults[0], "mx.isp.example;\tspf=fail smtp.mailfrom=sender.example;\tdkim=none")
		eq(t, "folded rcpt", strings.Join(r.OriginalRcptTo, ","), "frank@isp.example")
		eq(t, "empty domain kept", len(r.ReportedDomain) == 1 && r.ReportedDomain[0] == "", true)
		eq(t, "empty warning", r.HasWarning(WarnEmptyField), true)
	},
	"07-multipart-mixed": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "type", r.FeedbackType, "opt-out")
		eq(t, "outer warning", r.HasWarning(WarnOuterType), true)
	},
	"08-missing-report-type": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "warning", r.HasWarning(WarnMissingReportType), true)
	},
	"09-base64-feedback": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "ua", r.UserAgent, "B64/1.0")
		eq(t, "rcpt", strings.Join(r.OriginalRcptTo, ","), "ivan@isp.example")
		eq(t, "warning", r.HasWarning(WarnFeedbackPartEncoding), true)
	},
	"10-no-closing-boundary": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "warning", r.HasWarning(WarnNoClosingBoundary), true)
		eq(t, "embedded tail", bytes.HasSuffix(r.Embedded.Raw, []byte("simply ends\r\n")), true)
	},
	"11-auth-failure": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "auth-failure", r.AuthFailure, "dkim")
		eq(t, "delivery", r.DeliveryResult, "reject")
		eq(t, "dkim", r.DKIMDomain+" "+r.DKIMIdentity+" "+r.DKIMSelector, "sender.example @sender.example s1")
		eq(t, "canon header", r.DKIMCanonicalizedHeader, "ZnJvbTp4QHNlbmRlci5leGFtcGxlDQo=")
		eq(t, "canon body", r.DKIMCanonicalizedBody, "Ym9keQ0K")
		eq(t, "spf-dns", len(r.SPFDNS), 2)
		eq(t, "alignment", r.IdentityAlignment, "dkim, spf")
		eq(t, "headers only", r.Embedded.HeadersOnly, true)
		eq(t, "third", r.ThirdPart, "text/rfc822-headers")
	},
	"12-single-line": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "ua", r.UserAgent, "OneLine/1.0")
		eq(t, "version", r.Version, "1")
		eq(t, "ip", r.SourceIP.Raw, "93.184.216.34")
		eq(t, "rcpt", strings.Join(r.OriginalRcptTo, ","), "leo@isp.example")
		eq(t, "warning", r.HasWarning(WarnSingleLine), true)
	},
	"13-yaml": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "ua", r.UserAgent, "Yaml/1.0")
		eq(t, "version", r.Version, "1")
		eq(t, "rcpt", strings.Join(r.OriginalRcptTo, ","), "mia@isp.example,ned@isp.example")
		eq(t, "domain", strings.Join(r.ReportedDomain, ","), "sender.example")
		eq(t, "warning", r.HasWarning(WarnYAML), true)
	},
	"14-embedded-bounce": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "embedded from", r.Embedded.Header.Decoded("From"), "Mail Delivery Subsystem <MAILER-DAEMON@sender.example>")
		eq(t, "no closing warning", r.HasWarning(WarnNoClosingBoundary), false)
	},
	"15-jmrp": func(t *testing.T, r *Report) {
		want(t, r, ClassJMRP)
		eq(t, "origin", r.Origin.IP.String()+" "+r.Origin.Method, "93.184.216.34 jmrp-subject")
		eq(t, "inferred", r.Origin.Inferred, true)
		v, _ := r.InferredValues("original-rcpt-to")
		eq(t, "rcpt", strings.Join(v, ","), "pat@hotmail.com")
		eq(t, "recipients", strings.Join(r.RecipientAddresses(), ","), "pat@hotmail.com")
	},
	"16-inferred-origin": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "origin", r.Origin.IP.String()+" "+r.Origin.Method, "151.101.1.1 received-chain")
		eq(t, "inferred", r.Origin.Inferred, true)
		eq(t, "iso date", r.ArrivalDate.Time.Format("2006-01-02T15:04:05Z07:00"), "2025-01-06T09:59:58Z")
		eq(t, "recipients", strings.Join(r.RecipientAddresses(), ","), "quinn@isp.example")
	},
	"17-source-ip-forms": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "raw", r.SourceIP.Raw, "::ffff:93.184.216.34 (out.sender.example)")
		eq(t, "addr", r.SourceIP.Addr.String(), "93.184.216.34")
		eq(t, "comment", r.SourceIP.Comment, "out.sender.example")
	},
	"18-source-ip-invalid": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "raw kept", r.SourceIP.Raw, "93.184.216.999")
		eq(t, "invalid", r.SourceIP.Addr.IsValid(), false)
		eq(t, "warnings", r.HasWarning(WarnSourceIP) && r.HasWarning(WarnSourcePort) && r.HasWarning(WarnIncidents), true)
		eq(t, "origin from chain", r.Origin.IP.String()+" "+r.Origin.Method, "2606:2800:220:1:248:1893:25c8:1946 received-chain")
		eq(t, "origin port", r.Origin.Port, 2525)
	},
	"19-rfc822-header-misspelt": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "type", r.Embedded.ContentType, "text/rfc822-header")
		eq(t, "headers only", r.Embedded.HeadersOnly, true)
		eq(t, "warning", r.HasWarning(WarnEmbeddedType), true)
		eq(t, "recipients", strings.Join(r.RecipientAddresses(), ","), "tina@isp.example")
	},
	"20-bad-encodings": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "warning", r.HasWarning(WarnTransferEncoding), true)
		eq(t, "raw kept", bytes.Contains(r.Embedded.Raw, []byte("=ZZ")), true)
		eq(t, "ip", r.SourceIP.Addr.String(), "93.184.216.34")
	},
	"21-zoneless-date": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "field", r.ArrivalDate.Field, "Received-Date")
		eq(t, "zone assumed", r.ArrivalDate.ZoneAssumed, true)
		eq(t, "time", r.ArrivalDate.Time.Format("2006-01-02T15:04:05Z07:00"), "2015-04-29T23:34:45Z")
	},
	"22-date-only": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "date only", r.ArrivalDate.DateOnly, true)
		eq(t, "time", r.ArrivalDate.Time.Format("2006-01-02"), "2015-04-29")
	},
	"23-dsn": func(t *testing.T, r *Report) {
		want(t, r, ClassNotReport)
		eq(t, "reason", strings.Contains(r.Reason, "delivery status"), true)
	},
	"24-autoreply": func(t *testing.T, r *Report) {
		want(t, r, ClassNotReport)
		eq(t, "reason", r.Reason, "auto-reply")
	},
	"25-plain": func(t *testing.T, r *Report) {
		want(t, r, ClassNotReport)
		eq(t, "reason", r.Reason, "plain message: no feedback report")
	},
	"26-forwarded-arf": func(t *testing.T, r *Report) {
		want(t, r, ClassARFMalformed)
		eq(t, "warning", r.HasWarning(WarnForwarded), true)
		eq(t, "ua", r.UserAgent, "Wrapped/1.0")
		eq(t, "origin", r.Origin.IP.String(), "93.184.216.34")
	},
	"27-arf-in-text": func(t *testing.T, r *Report) {
		want(t, r, ClassARFMalformed)
		eq(t, "ua", r.UserAgent, "Ticket/1.0")
		eq(t, "origin", r.Origin.IP.String(), "93.184.216.34")
		eq(t, "warning", r.HasWarning(WarnNoFeedbackPart), true)
	},
	"28-missing-feedback-type": func(t *testing.T, r *Report) {
		want(t, r, ClassARFMalformed)
		eq(t, "warning", r.HasWarning(WarnMissingField), true)
		eq(t, "origin", r.Origin.IP.String(), "93.184.216.34")
	},
	"29-charsets": func(t *testing.T, r *Report) {
		want(t, r, ClassARF)
		eq(t, "subject", r.Header.Decoded("Subject"), "Письмо report")
		eq(t, "text", r.Text, "Rapport d'abus reçu.")
		eq(t, "embedded subject", r.Embedded.Header.Decoded("Subject"), "Hello 😃")
		eq(t, "recipients", strings.Join(r.RecipientAddresses(), ","), "jose@isp.example")
	},
}

func want(t *testing.T, r *Report, c Class) {
	t.Helper()
	if r.Class != c {
		t.Fatalf("class = %s (%s), want %s; warnings %v", r.Class, r.Reason, c, r.Warnings)
	}
}

func eq[T comparable](t *testing.T, what string, got, exp T) {
	t.Helper()
	if got != exp {
		t.Errorf("%s = %v, want %v", what, got, exp)
	}
}

func TestFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", fixtureDir, err)
	}
	var names []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".eml")
		names = append(names, name)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Parse(raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			check, ok := fixtureChecks[name]
			if !ok {
				t.Fatalf("fixture %s has no entry in fixtureChecks", name)
			}
			check(t, r)
			got, err := json.MarshalIndent(golden{Report: r, Recipients: r.RecipientAddresses()}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			gf := strings.TrimSuffix(f, ".eml") + ".json"
			if *update {
				if err := os.WriteFile(gf, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(gf)
			if err != nil {
				t.Fatalf("golden file: %v (run with -update)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("report differs from %s (rerun with -update and review the diff):\n%s", gf, got)
			}
		})
	}
	for name := range fixtureChecks {
		if !slices.Contains(names, name) {
			t.Errorf("fixtureChecks names %s but there is no %s.eml", name, name)
		}
	}
}
