package xarf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/arf"
)

// trapCase is the SMTP side of one hand-written trap fixture and what its
// report must say.
type trapCase struct {
	env       *Envelope
	trusted   []string
	wantErr   error
	origin    string
	port      int
	protocol  string
	smtpFrom  string
	timestamp string
	tags      []string // must be present
}

var trapCases = map[string]trapCase{
	"01-trap-direct-ipv4": {
		env:    &Envelope{Peer: netip.MustParseAddrPort("203.0.113.45:50123"), MailFrom: "winner@spam.example"},
		origin: "203.0.113.45", port: 50123, protocol: ProtocolSMTP, smtpFrom: "winner@spam.example",
		timestamp: "2026-03-01T12:00:00Z", // the direct peer: the time we received it
		tags:      []string{"origin:smtp-peer", "channel:spamtrap"},
	},
	"02-trap-postfix-relay-ipv4": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("192.0.2.5:33333"), MailFrom: "offers@spam.example"},
		trusted: []string{"192.0.2.0/24"},
		origin:  "198.51.100.23", protocol: ProtocolOther, smtpFrom: "offers@spam.example",
		timestamp: "2026-03-01T10:00:01Z",
		tags:      []string{"origin:received-chain", "protocol:smtp", "smtp-from:relay-mail-from"},
	},
	"03-trap-exim-relay-port": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("192.0.2.20:40000"), MailFrom: "SRS0=abcd=TT=bulk.spam.example=bounce-42@relay.trap.example"},
		trusted: []string{"192.0.2.0/24"},
		origin:  "198.51.100.77", port: 52344, protocol: ProtocolSMTP, smtpFrom: "bounce-42@bulk.spam.example",
		tags: []string{"smtp-from:received-envelope-from"},
	},
	"04-trap-sendmail-relay-ipv6": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("192.0.2.30:25"), MailFrom: "promo@spam6.example"},
		trusted: []string{"192.0.2.0/24"},
		origin:  "2001:db8:85a3::8a2e:370:7334", protocol: ProtocolOther, smtpFrom: "promo@spam6.example",
		tags: []string{"origin:non-public"},
	},
	"05-trap-exchange-relay": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("10.1.2.4:25"), Relayed: true, MailFrom: "invoice@spam.example"},
		trusted: []string{"10.0.0.0/8"},
		origin:  "198.51.100.99", protocol: ProtocolOther, smtpFrom: "invoice@spam.example",
		timestamp: "2026-03-01T12:45:08Z",
	},
	"06-trap-qmail-relay": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("[2001:db8:ffff::1]:25"), MailFrom: "lottery@spam.example"},
		trusted: []string{"2001:db8:ffff::/48"},
		origin:  "198.51.100.150", protocol: ProtocolOther, smtpFrom: "lottery@spam.example",
	},
	"07-trap-gmail-forward-ipv6": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("209.85.220.69:46000"), MailFrom: "gains@spam.example"},
		trusted: []string{"209.85.128.0/17"},
		origin:  "2001:db8:1234::25", protocol: ProtocolOther, smtpFrom: "gains@spam.example",
		timestamp: "2026-03-01T15:10:02Z",
	},
	"08-trap-null-sender": {
		env:    &Envelope{Peer: netip.MustParseAddrPort("198.51.100.200:61000"), MailFrom: ""},
		origin: "198.51.100.200", port: 61000, protocol: ProtocolOther,
		tags: []string{"smtp-from:null", "protocol:smtp"},
	},
	"09-trap-no-envelope": {
		origin: "198.51.100.31", protocol: ProtocolOther, smtpFrom: "seller@spam.example",
		tags: []string{"origin:inferred-received-chain", "smtp-from:return-path"},
	},
	"10-trap-all-trusted": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("192.0.2.10:25"), MailFrom: "monitor@trap.example"},
		trusted: []string{"192.0.2.0/24"},
		wantErr: ErrNoOrigin,
	},
	"11-trap-hop-without-address": {
		env:     &Envelope{Peer: netip.MustParseAddrPort("192.0.2.10:25"), MailFrom: "someone@forged.example"},
		trusted: []string{"192.0.2.0/24"},
		wantErr: ErrNoOrigin,
	},
}

func (c trapCase) input(raw []byte) Input {
	in := corpusInput(raw)
	in.Reporter = Contact{Org: "Example Trap Network", Contact: "traps@trap.example", Domain: "trap.example"}
	in.Envelope = c.env
	if len(c.trusted) > 0 {
		in.Trusted = trustedNets(c.trusted...)
	}
	return in
}

// TestTrapFixtures converts every hand-written trap message, checks the
// mapping and validates the result.
func TestTrapFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.eml"))
	if len(files) < len(trapCases) {
		t.Fatalf("found %d fixtures in %s, want at least %d", len(files), fixtureDir, len(trapCases))
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		t.Run(name, func(t *testing.T) {
			c, ok := trapCases[name]
			if !ok {
				t.Fatalf("fixture %s has no entry in trapCases", name)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := FromTrap(c.input(raw))
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("want %v, got %v (%+v)", c.wantErr, err, doc)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := marshal(t, doc)
			mustValid(t, name, b)
			if doc.SourceIdentifier != c.origin || doc.SourcePort != c.port || doc.Protocol != c.protocol || doc.SMTPFrom != c.smtpFrom {
				t.Errorf("got origin %s port %d protocol %s smtp_from %q; want %s %d %s %q",
					doc.SourceIdentifier, doc.SourcePort, doc.Protocol, doc.SMTPFrom, c.origin, c.port, c.protocol, c.smtpFrom)
			}
			if c.timestamp != "" && doc.Timestamp != c.timestamp {
				t.Errorf("timestamp %s, want %s", doc.Timestamp, c.timestamp)
			}
			for _, tag := range c.tags {
				if !containsString(doc.Tags, tag) {
					t.Errorf("tag %s missing from %v", tag, doc.Tags)
				}
			}
			if doc.EvidenceSource != SourceSpamtrap || doc.SMTPTo != "" || !containsString(doc.Tags, "redacted:recipients") {
				t.Errorf("evidence_source %s, smtp_to %q, tags %v", doc.EvidenceSource, doc.SMTPTo, doc.Tags)
			}
			if doc.Protocol == ProtocolOther && !strings.Contains(doc.Description, `protocol is given as "other"`) {
				t.Errorf("protocol other without a word in the description: %s", doc.Description)
			}
			golden(t, name, doc)
		})
	}
}

// corpusGolden are the corpus files whose reports are kept as golden files.
var corpusGolden = map[string]string{
	"20-corpus-yahoo-received-chain": "yahoo-cfortune-fbl.eml",
	"21-corpus-jmrp":                 "hotmail-jmrp-cfortune-fbl.eml",
	"22-corpus-ipv6-source-ip":       "spamexperts-ipv6-abuseio-11.eml",
	"25-corpus-reported-bounce-null": "aol-reported-dsn-basman-6.eml",
	"26-corpus-encoded-word-sender":  "zoho-abuseio-2.eml",
	"27-corpus-iso2022jp-subject":    "aol-iso2022jp-basman-3.eml",
}

// corpusRefused are corpus files that must yield no report: DMARC and
// other authentication failure reports (RFC 6591) are not spam. They
// were golden files 23, 24 and 26 while they were wrongly reported.
var corpusRefused = []string{
	"rfc6591-appB1-authfailure.eml",
	"neg-exim-dmarc-no-arf-part-parsedmarc.eml", // no feedback part: the Subject says DMARC
	"dmarc-ruf-domain-de-parsedmarc.eml",
}

func TestCorpusRefused(t *testing.T) {
	needDir(t, corpusDir(), "shared ARF corpus")
	for _, file := range corpusRefused {
		raw, err := os.ReadFile(filepath.Join(corpusDir(), file))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := arf.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := FromARF(rep, corpusInput(raw))
		if !errors.Is(err, ErrNotAbuse) || !strings.Contains(err.Error(), "RFC 6591") {
			t.Errorf("%s: want ErrNotAbuse naming RFC 6591, got %v (%+v)", file, err, doc)
		}
	}
}

func TestCorpusGolden(t *testing.T) {
	needDir(t, corpusDir(), "shared ARF corpus")
	for name, file := range corpusGolden {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(corpusDir(), file))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := arf.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := FromARF(rep, corpusInput(raw))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, doc)
		})
	}
}

// golden compares doc, with report_id, timestamp and evidence payloads
// normalised (the hash and size still pin the payload), with
// testdata/<name>.json; -update rewrites it.
func golden(t *testing.T, name string, doc *Report) {
	t.Helper()
	var c Report
	if err := json.Unmarshal(marshal(t, doc), &c); err != nil {
		t.Fatal(err)
	}
	c.ReportID = "00000000-0000-0000-0000-000000000000"
	c.Timestamp = "1970-01-01T00:00:00Z"
	for i := range c.Evidence {
		c.Evidence[i].Payload = fmt.Sprintf("(base64, %d characters)", len(c.Evidence[i].Payload))
	}
	got := append(marshal(t, &c), '\n')
	path := filepath.Join(fixtureDir, name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
