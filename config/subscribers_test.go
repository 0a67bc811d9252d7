package config

import (
	"strings"
	"testing"
)

func TestSubscribersBlockAsInterfaceWritesIt(t *testing.T) {
	y := minimal + `
own_networks: ["192.0.2.0/24"]
subscribers:
  static_file: /etc/xarfd/subscribers.csv
  assignments_file: /var/lib/radius/xarfd.jsonl
  lookup_url: ""
  notify: {enabled: false, from: abuse@example.net, template_file: "", min_interval: 24h}
  restrict:
    after: {reports: 10, trap_hits: 1, window: 24h}
    webhook: {url: "", secret_file: /etc/xarfd/webhook.key}
    enabled: false
`
	y = strings.Replace(y, `addresses: ["FBL@Example.NET"]`, "addresses: [\"FBL@Example.NET\"]\n    uses: [own, store]", 1)
	c, err := Parse([]byte(y), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := c.Subscribers
	if !c.Channels[0].Has(UseOwn) || s.StaticFile != "/etc/xarfd/subscribers.csv" || s.Restrict.After.TrapHits != 1 ||
		s.Notify.MinInterval.D() != DefaultNotifyMinInterval || s.Restrict.Webhook.Timeout.D() != DefaultWebhookTimeout ||
		s.LookupTimeout.D() != DefaultLookupTimeout {
		t.Errorf("subscribers = %+v", s)
	}
}

func TestSubscribersErrorsNameKeys(t *testing.T) {
	cases := []struct{ yaml, key string }{
		{"channels:\n  - {name: x, kind: arf, addresses: [a@b.example], uses: [own]}\n", "channels[0].uses[0]"},
		{"subscribers: {notify: {enabled: true}}\n", "subscribers.notify.from"},
		{"subscribers: {restrict: {enabled: true}}\n", "subscribers.restrict.webhook.url"},
		{"subscribers: {restrict: {enabled: true, webhook: {url: \"http://127.0.0.1/\"}}}\n", "subscribers.restrict.webhook.secret_file"},
		{"subscribers: {restrict: {webhook: {url: \"ftp://x\"}}}\n", "subscribers.restrict.webhook.url"},
		{"subscribers: {lookup_url: \"nope\"}\n", "subscribers.lookup_url"},
		{"subscribers: {restrict: {after: {window: 0s}}}\n", "subscribers.restrict.after.window"},
		{"subscribers: {restrict: {after: {reports: -1}}}\n", "subscribers.restrict.after.reports"},
		{"subscribers: {restrict: {webhook: {timeout: 0s}}}\n", "subscribers.restrict.webhook.timeout"},
	}
	for _, tc := range cases {
		y := minimal + tc.yaml
		if strings.HasPrefix(tc.yaml, "channels:") {
			y = "hostname: mx.example.net\nsender: {org: Example, contact: abuse@example.net, domain: example.net}\n" + tc.yaml
		}
		_, err := Parse([]byte(y), "bad.yaml")
		if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%q: err = %v, want one naming %s", tc.yaml, err, tc.key)
		}
	}
}
