package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
hostname: mx.example.net
sender: {org: Example, contact: abuse@example.net, domain: example.net}
channels:
  - name: fbl
    kind: arf
    addresses: ["FBL@Example.NET"]
`

func TestEmbeddedDefault(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != EmbeddedSource || c.SMTP.Listen[0] != "127.0.0.1:2525" || c.HTTP.Listen != "127.0.0.1:8025" ||
		c.DataDir != "./xarfd-data" || c.Reporter.Enabled {
		t.Errorf("embedded default = %+v", c)
	}
	fbl, trap := c.Channel("fbl"), c.Channel("trap")
	if fbl == nil || fbl.Kind != KindARF || fbl.Addresses[0] != "fbl@localhost" {
		t.Errorf("fbl channel = %+v", fbl)
	}
	if trap == nil || trap.Kind != KindTrap || trap.Addresses[0] != "*@trap.localhost" || !trap.Redact.Enabled() {
		t.Errorf("trap channel = %+v", trap)
	}
}

func TestDefaultsFillOmittedKeys(t *testing.T) {
	c, err := Parse([]byte(minimal), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ch := c.Channels[0]
	if ch.Addresses[0] != "fbl@example.net" {
		t.Errorf("address not normalised: %q", ch.Addresses[0])
	}
	if ch.Retention.D() != DefaultRetention || ch.Redact.Mode != RedactToken || !ch.ReportTo.Origin ||
		!ch.Has(UseReport) || !ch.Has(UseStore) {
		t.Errorf("channel defaults = %+v", ch)
	}
	if c.SMTP.MaxMessageBytes != DefaultMaxMessageBytes || c.SMTP.ReadTimeout.D() != DefaultReadTimeout ||
		c.SMTP.Listen[0] != DefaultSMTPListen || c.Reporter.Retry.GiveUpAfter.D() != DefaultGiveUpAfter ||
		c.Reporter.MaxRecipientsPerReport != DefaultMaxRecipientsPerReport ||
		c.Contacts.CacheTTL.D() != DefaultContactCacheTTL || c.SMTP.MaxConnectionsPerIP != DefaultMaxConnectionsPerIP ||
		c.SMTP.ReservedConnections != DefaultReservedConnections || c.SMTP.SessionTimeout.D() != DefaultSessionTimeout ||
		c.SMTP.MaxInflightBytes != DefaultMaxInflightBytes || c.HTTP.MaxBodyBytes != DefaultHTTPMaxBodyBytes ||
		c.HTTP.Console.Enabled != DefaultConsoleEnabled || c.HTTP.Console.SessionTTL.D() != DefaultConsoleSessionTTL ||
		c.HTTP.Console.SecureCookie {
		t.Errorf("top-level defaults = %+v", c)
	}
	// The effective configuration prints and reads back the same.
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(out, "printed.yaml")
	if err != nil {
		t.Fatalf("printed configuration does not load: %v\n%s", err, out)
	}
	if c2.SMTP.ReadTimeout != c.SMTP.ReadTimeout || c2.Channels[0].Retention != ch.Retention {
		t.Error("printed configuration reads back differently")
	}
}

func TestFullInterfaceExample(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "redact.key")
	pw := filepath.Join(dir, "smtp.pw")
	users := filepath.Join(dir, "users")
	dkim := filepath.Join(dir, "dkim.pem")
	for _, f := range []string{pw, users, dkim} {
		os.WriteFile(f, []byte("x"), 0o600)
	}
	os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600)
	yaml := `
hostname: mx.example.net
data_dir: /var/lib/xarfd
resolver: "127.0.0.1:53"
sender: {org: Example Net, contact: abuse@example.net, domain: example.net}
smtp:
  listen: ["0.0.0.0:25"]
  max_message_bytes: 26214400
  max_recipients: 50
  read_timeout: 60s
  max_connections: 1000
http:
  listen: "0.0.0.0:8025"
  hostnames: [xarfd.example.net]
  max_body_bytes: 52428800
  tokens:
    - {name: ops, sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", scopes: [read, submit]}
channels:
  - name: fbl-yahoo
    kind: arf
    addresses: ["fbl@example.net"]
    accept_from:
      networks: ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]
      dkim_domains: ["yahoo.com"]
    reporter_org: {org: Yahoo, contact: fbl@yahoo.com, domain: yahoo.com}
    redact:
      recipients: true
      addresses: ["ceo@example.net"]
      domains: ["trap.example.net"]
      mode: hmac
      hmac_key_file: ` + key + `
    uses: [report, store]
    report_to: origin
    retention: 720h
  - name: traps
    kind: trap
    addresses: ["*@trap.example.net"]
    report_to: ["partner@example.org"]
    trusted_relays: ["203.0.113.0/24"]
reporter:
  enabled: false
  from: abuse-reports@example.net
  format: xarf
  smarthost: {address: "smtp.example.net:587", username: xarfd, password_file: ` + pw + `, tls: starttls}
  dkim: {domain: example.net, selector: xarfd, private_key_file: ` + dkim + `}
  per_contact_per_hour: 60
  max_recipients_per_report: 3
  retry: {first: 5m, give_up_after: 48h}
contacts:
  static: [{network: "198.51.100.0/24", email: abuse@example.org}]
  dns_zones: ["abuse-contacts.abusix.zone"]
  rdap: {enabled: true, base_url: "https://rdap.example.net/"}
  cache_ttl: 24h
own_networks: ["192.0.2.0/24"]
`
	c, err := Parse([]byte(yaml), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Channels[0].AcceptFrom.Networks[2].String(); got != "198.51.100.7/32" {
		t.Errorf("single address = %s", got)
	}
	if rt := c.Channels[1].ReportTo; rt.Origin || len(rt.Partners) != 1 {
		t.Errorf("report_to list = %+v", rt)
	}
	if c.HTTP.Hostnames[0] != "xarfd.example.net" || c.HTTP.MaxBodyBytes != 50<<20 {
		t.Errorf("http = %+v", c.HTTP)
	}
	if c.Reporter.Retry.First.D() != 5*time.Minute || c.Reporter.MaxRecipientsPerReport != 3 || c.Contacts.Static[0].Network.Bits() != 24 {
		t.Errorf("reporter/contacts = %+v %+v", c.Reporter, c.Contacts)
	}
}

// TestErrorsNameFileAndKey has one case per class of error; each message
// must name the file and the key (and the line where it has one).
func TestErrorsNameFileAndKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"yaml syntax", "channels: [\n", []string{"bad.yaml", "line"}},
		{"unknown top-level key", minimal + "smpt: {}\n", []string{"bad.yaml:8: smpt: unknown key"}},
		{"unknown nested key", minimal + "smtp: {lissten: [x]}\n", []string{"bad.yaml:8: smtp.lissten: unknown key", "listen"}},
		{"unknown key in list item", minimal + "    colour: red\n", []string{"bad.yaml:8: channels[0].colour: unknown key"}},
		{"wrong type", minimal + "smtp: {max_recipients: many}\n", []string{"bad.yaml:8: smtp.max_recipients:", "many"}},
		{"bad duration", minimal + "smtp: {read_timeout: 60}\n", []string{"bad.yaml:8: smtp.read_timeout:", "not a duration"}},
		// Several keys on one line: the error names the one whose value is wrong.
		{"bad duration in a flow mapping", minimal + "smtp: {read_timeout: 60s, write_timeout: -1m, session_timeout: 30m}\n", []string{"bad.yaml:8: smtp.write_timeout:", "negative"}},
		{"bad network in a flow list", minimal + "own_networks: [10.0.0.0/8, nowhere]\n", []string{"bad.yaml:8: own_networks[1]:", "not an IP"}},
		{"bad network", minimal + "own_networks: [10.0.0.1/8]\n", []string{"own_networks[0]", "host bits"}},
		{"bad network text", minimal + "    accept_from: {networks: [nowhere]}\n", []string{"channels[0].accept_from.networks[0]", "not an IP"}},
		{"bad enum", minimal + "  - {name: b, kind: mbox, addresses: [b@example.net]}\n", []string{"channels[1].kind", "want arf or trap"}},
		{"bad report_to", minimal + "    report_to: everyone\n", []string{"channels[0].report_to", "origin"}},
		{"bad routing address", strings.Replace(minimal, "FBL@Example.NET", "fbl", 1), []string{"channels[0].addresses[0]", "user@domain"}},
		{"address in two channels", minimal + "  - {name: b, kind: arf, addresses: [fbl@example.net]}\n", []string{"channels[1].addresses[0]", `routes to channel "fbl"`}},
		{"duplicate channel", minimal + "  - {name: fbl, kind: arf, addresses: [x@example.net]}\n", []string{"channels[1].name", "used twice"}},
		{"no channels", "hostname: a.example\nsender: {org: E, contact: a@b.example, domain: b.example}\n", []string{"bad.yaml: channels: needs at least one"}},
		{"missing required", strings.Replace(minimal, "contact: abuse@example.net, ", "", 1), []string{"sender.contact: must not be empty"}},
		{"missing sender org", strings.Replace(minimal, "org: Example, ", "", 1), []string{"sender.org: must not be empty"}},
		{"bad email", minimal + "reporter: {from: not-an-address}\n", []string{"reporter.from", "not a plain email"}},
		{"hmac without key", minimal + "    redact: {mode: hmac}\n", []string{"channels[0].redact.hmac_key_file: is required"}},
		{"tls half configured", minimal + "smtp: {tls: {cert_file: /x.pem}}\n", []string{"smtp.tls.key_file: is required"}},
		{"public API without tokens", minimal + "http: {listen: '0.0.0.0:8025'}\n", []string{"http.listen", "not a loopback"}},
		{"bad token hash", minimal + "http: {tokens: [{name: a, sha256: abc, scopes: [read]}]}\n", []string{"http.tokens[0].sha256"}},
		{"bad scope", minimal + "http: {tokens: [{name: a, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, scopes: [root]}]}\n", []string{"http.tokens[0].scopes[0]", "root"}},
		{"token for unknown channel", minimal + "http: {tokens: [{name: a, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, scopes: [submit], channels: [nope]}]}\n", []string{"http.tokens[0].channels[0]", "nope"}},
		{"users without auth file", minimal + "    accept_from: {users: [p1]}\n", []string{"channels[0].accept_from.users: needs smtp.auth_file"}},
		{"body limit too small", minimal + "http: {max_body_bytes: 10}\n", []string{"http.max_body_bytes", "too small"}},
		{"console session too short", minimal + "http: {console: {session_ttl: 10s}}\n", []string{"bad.yaml:8: http.console.session_ttl", "from 1m"}},
		{"hostname with port", minimal + "http: {hostnames: ['xarfd.example.net:8025']}\n", []string{"http.hostnames[0]", "without port"}},
		{"hostname with scheme", minimal + "http: {hostnames: ['https://xarfd.example.net']}\n", []string{"http.hostnames[0]"}},
		{"out of range", minimal + "smtp: {max_connections: 0}\n", []string{"smtp.max_connections: must be at least 1"}},
		{"per-ip cap", minimal + "smtp: {max_connections_per_ip: 0}\n", []string{"smtp.max_connections_per_ip: must be at least 1"}},
		{"negative reserve", minimal + "smtp: {reserved_connections: -1}\n", []string{"smtp.reserved_connections: must not be negative"}},
		{"session shorter than a read", minimal + "smtp: {read_timeout: 60s, session_timeout: 10s}\n", []string{"smtp.session_timeout: 10s is shorter than smtp.read_timeout"}},
		{"budget below one message", minimal + "smtp: {max_message_bytes: 2048, max_inflight_bytes: 1024}\n", []string{"smtp.max_inflight_bytes: 1024 is below smtp.max_message_bytes"}},
		{"negative budget", minimal + "smtp: {max_inflight_bytes: -5}\n", []string{"smtp.max_inflight_bytes: must not be negative"}},
		{"bad listen", minimal + "smtp: {listen: [':nope:']}\n", []string{"smtp.listen[0]"}},
		{"dkim half configured", minimal + "reporter: {dkim: {domain: example.net}}\n", []string{"reporter.dkim:", "together"}},
		{"no recipients per report", minimal + "reporter: {max_recipients_per_report: 0}\n", []string{"reporter.max_recipients_per_report: must be at least 1"}},
		{"no uses", minimal + "    uses: []\n", []string{"bad.yaml:8: channels[0].uses: needs report, store or both"}},
		{"semantic error names its line", minimal + "smtp:\n  max_recipients: 0\n", []string{"bad.yaml:9: smtp.max_recipients: must be at least 1"}},
		{"left-out key names the enclosing line", strings.Replace(minimal, "org: Example, ", "", 1), []string{"bad.yaml:3: sender.org: must not be empty"}},
		{"bad log level", minimal + "log: {level: verbose}\n", []string{"bad.yaml:8: log.level:", "debug, info, warn or error"}},
		{"reporter_org and its old name", minimal + "    reporter_org: {org: A}\n    reporter: {org: B}\n", []string{"bad.yaml:9: channels[0].reporter: is the old name of reporter_org; write only reporter_org"}},
		{"bad contact under the old name", minimal + "    reporter: {org: A, contact: nope}\n", []string{"bad.yaml:8: channels[0].reporter.contact:"}},
		{"bad contact under reporter_org", minimal + "    reporter_org: {org: A, contact: nope}\n", []string{"bad.yaml:8: channels[0].reporter_org.contact:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "bad.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "bad.yaml") {
				t.Errorf("error %q does not start with the file name", err)
			}
		})
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	_, err := Parse([]byte(minimal+"    uses: [x]\nsmtp: {max_recipients: 0, max_connections: 0}\n"), "bad.yaml")
	es, ok := err.(Errors)
	if !ok || len(es) < 3 {
		t.Fatalf("want every problem reported, got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/xarfd.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/xarfd.yaml: cannot read") {
		t.Fatalf("got %v", err)
	}
}

func TestWarningsNameChannelsThatSendRecipients(t *testing.T) {
	cfg, err := Parse([]byte(`
sender: {org: T, contact: abuse@test.example, domain: test.example}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@test.example"]}
  - {name: trap, kind: trap, addresses: ["*@trap.test.example"], redact: {recipients: true}}
  - {name: listed, kind: trap, addresses: ["*@l.test.example"], redact: {domains: [l.test.example]}, report_to: [desk@partner.example]}
  - {name: quiet, kind: arf, addresses: ["q@test.example"], uses: [store]}
reporter: {enabled: true, from: r@test.example}
`), "w.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Warnings()
	if len(w) != 2 {
		t.Fatalf("warnings = %q, want fbl and listed", w)
	}
	if !strings.HasPrefix(w[0], "w.yaml: channels[0].redact.recipients: channel fbl") || !strings.Contains(w[0], "Original-Rcpt-To") || !strings.Contains(w[0], "are sent to the abuse contact of the origin network") {
		t.Errorf("fbl: %s", w[0])
	}
	if !strings.Contains(w[1], "channels[2]") || !strings.Contains(w[1], "outside redact.addresses and redact.domains") || !strings.Contains(w[1], "desk@partner.example") {
		t.Errorf("listed: %s", w[1])
	}
}

// TestReporterOrgOldKey: files written before the channel's reporter
// became reporter_org keep working, with a warning naming file, line and
// key, and check-config prints the new name.
func TestReporterOrgOldKey(t *testing.T) {
	org := Org{Org: "Yahoo", Contact: "fbl@yahoo.com", Domain: "yahoo.com"}
	old, err := Parse([]byte(minimal+"    uses: [store]\n    reporter: {org: Yahoo, contact: fbl@yahoo.com, domain: yahoo.com}\n"), "old.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if ch := old.Channels[0]; ch.ReporterOrg != org || ch.LegacyReporter != nil {
		t.Errorf("old key read as reporter_org %+v, legacy %+v", ch.ReporterOrg, ch.LegacyReporter)
	}
	ws := old.Warnings()
	if len(ws) != 1 || !strings.HasPrefix(ws[0], "old.yaml:9: channels[0].reporter: renamed to reporter_org") {
		t.Errorf("warnings = %q", ws)
	}
	out, err := old.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "    reporter_org:\n      org: Yahoo\n") || strings.Contains(string(out), "    reporter:") {
		t.Errorf("effective configuration:\n%s", out)
	}

	cur, err := Parse([]byte(minimal+"    uses: [store]\n    reporter_org: {org: Yahoo, contact: fbl@yahoo.com, domain: yahoo.com}\n"), "new.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Channels[0].ReporterOrg != org {
		t.Errorf("reporter_org = %+v", cur.Channels[0].ReporterOrg)
	}
	if ws := cur.Warnings(); len(ws) != 0 {
		t.Errorf("warnings for the new key: %q", ws)
	}
}
