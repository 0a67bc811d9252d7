package config

import (
	"strings"
	"testing"
)

func TestIntelDefaults(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Intel
	if !cfg.Channel("trap").Has(UseIntel) || cfg.Channel("fbl").Has(UseIntel) {
		t.Errorf("embedded default: trap must use intel, fbl must not")
	}
	if len(in.DNS.Listen) != 1 || in.DNS.Listen[0] != "127.0.0.1:5353" || in.IPZone != "bl.localhost" || in.DomainZone != "dbl.localhost" {
		t.Errorf("embedded default intel = %+v", in)
	}
	if in.ListAfter.Spamtrap != DefaultIntelListAfterSpamtrap || in.ListAfter.UserComplaint != DefaultIntelListAfterComplaint ||
		in.Window.D() != DefaultIntelWindow || in.ExpireAfter.D() != DefaultIntelExpireAfter ||
		in.Export.Interval.D() != DefaultIntelExportInterval || !in.Allow.Builtin {
		t.Errorf("defaults not applied: %+v", in)
	}
}

func TestIntelErrorsNameKeys(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"use without zones", minimal + "    uses: [store, intel]\n", "intel.ip_zone: must not be empty"},
		{"bad use", minimal + "    uses: [store, intelligence]\n", `channels[0].uses[1]: "intelligence": want report, store, intel or own`},
		{"bad zone", minimal + "intel: {ip_zone: 'a b', domain_zone: dbl.example.net}\n", "intel.ip_zone"},
		{"nested zones", minimal + "intel: {ip_zone: bl.example.net, domain_zone: x.bl.example.net}\n", "intel.domain_zone"},
		{"bad threshold", minimal + "intel: {list_after: {spamtrap: 0}}\n", "intel.list_after.spamtrap: must be positive"},
		{"bad window", minimal + "intel: {window: 0s}\n", "intel.window: must be positive"},
		{"bad listen", minimal + "intel: {ip_zone: bl.example.net, domain_zone: dbl.example.net, dns: {listen: [nope]}}\n", "intel.dns.listen[0]"},
		{"bad allow", minimal + "intel: {allow: {networks: [10.0.0.1/8]}}\n", "intel.allow.networks[0]"},
		{"bad allow domain", minimal + "intel: {allow: {domains: ['-']}}\n", "intel.allow.domains[0]"},
		{"unknown key", minimal + "intel: {zone: x}\n", "intel.zone"},
		{"bad lookup url", minimal + "intel: {lookup_url: 'ftp://x'}\n", "intel.lookup_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "bad.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "bad.yaml") {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := Parse([]byte(minimal+"    uses: [store, intel]\nintel: {ip_zone: bl.example.net, domain_zone: dbl.example.net}\n"), "ok.yaml"); err != nil {
		t.Fatalf("valid intel config refused: %v", err)
	}
}
