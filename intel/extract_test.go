package intel

import (
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/config"
)

var update = flag.Bool("update", false, "rewrite the golden .json files' indicators")

// testConfig has names a real deployment would have: every exclusion
// must hold for real TLDs, not only thanks to reserved ones.
const testConfig = `
hostname: mx1.abuse-desk.net
sender: {org: Desk, contact: abuse@abuse-desk.net, domain: abuse-desk.net}
own_networks: ["81.2.69.0/24"]
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@feedback-desk.org"]
    uses: [store, intel]
  - name: trap
    kind: trap
    addresses: ["*@honey.catchall-mail.com"]
    redact: {recipients: true, domains: [pots.mailtrap-two.info], addresses: [ceo@victim-corp.de]}
    uses: [store, intel]
intel:
  ip_zone: bl.abuse-desk.net
  domain_zone: dbl.abuse-desk.net
  allow: {networks: ["185.70.40.0/22"], domains: [newsletter-partner.eu]}
`

func testExtractor(t testing.TB) *Extractor {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return NewExtractor(cfg)
}

// golden is NN-name.json: the input's envelope, the indicators wanted,
// and substrings that must never appear in any indicator.
type golden struct {
	Channel    string      `json:"channel"`
	SourceIP   string      `json:"source_ip,omitempty"`
	MailFrom   string      `json:"mail_from,omitempty"`
	Rcpts      []string    `json:"rcpts,omitempty"`
	Never      []string    `json:"never,omitempty"`
	Indicators []Indicator `json:"indicators"`
}

func TestGolden(t *testing.T) {
	x := testExtractor(t)
	files, _ := filepath.Glob("testdata/*.eml")
	if len(files) < 10 {
		t.Fatalf("found %d golden files", len(files))
	}
	for _, eml := range files {
		name := strings.TrimSuffix(eml, ".eml")
		t.Run(filepath.Base(name), func(t *testing.T) {
			raw, err := os.ReadFile(eml)
			if err != nil {
				t.Fatal(err)
			}
			jb, err := os.ReadFile(name + ".json")
			if err != nil {
				t.Fatal(err)
			}
			var g golden
			if err := json.Unmarshal(jb, &g); err != nil {
				t.Fatal(err)
			}
			in := Input{MailFrom: g.MailFrom, Rcpts: g.Rcpts, Raw: raw}
			if g.SourceIP != "" {
				in.SourceIP = netip.MustParseAddr(g.SourceIP)
			}
			got := x.Extract(g.Channel, in)
			for _, ind := range got {
				for _, n := range g.Never {
					if strings.Contains(strings.ToLower(ind.Value), strings.ToLower(n)) {
						t.Errorf("%s %q contains %q, which must never be extracted", ind.Kind, ind.Value, n)
					}
				}
			}
			if *update {
				g.Indicators = got
				b, _ := json.MarshalIndent(g, "", "  ")
				os.WriteFile(name+".json", append(b, '\n'), 0o644)
				return
			}
			gb, _ := json.MarshalIndent(got, "", "  ")
			wb, _ := json.MarshalIndent(g.Indicators, "", "  ")
			if string(gb) != string(wb) {
				t.Errorf("indicators:\n%s\nwant:\n%s", gb, wb)
			}
		})
	}
}

func FuzzExtract(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, "trap")
		}
	}
	x := testExtractor(f)
	f.Fuzz(func(t *testing.T, raw []byte, channel string) {
		for _, ind := range x.Extract(channel, Input{Raw: raw, SourceIP: netip.MustParseAddr("45.142.120.11"), MailFrom: "a@b.biz"}) {
			if ind.Value == "" || strings.Contains(ind.Value, "catchall-mail.com") || strings.Contains(ind.Value, "redacted") {
				t.Fatalf("bad indicator %+v", ind)
			}
			if _, ok := ParseKind(string(ind.Kind)); !ok {
				t.Fatalf("bad kind %+v", ind)
			}
		}
	})
}
