package cases

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/config"
)

func TestCheckNamesKeyAndFile(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t.tmpl")
	os.WriteFile(tmpl, []byte("Hello {{.Subscriber.Name"), 0o600)
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("short\n"), 0o600)
	cfg, err := config.Parse([]byte(`
hostname: mx.example.net
sender: {org: Example, contact: abuse@example.net, domain: example.net}
own_networks: ["192.0.2.0/24"]
channels:
  - {name: fbl, kind: arf, addresses: [fbl@example.net], uses: [own]}
subscribers:
  assignments_file: `+filepath.Join(dir, "missing.jsonl")+`
  notify: {template_file: `+tmpl+`}
  restrict: {enabled: true, webhook: {url: "http://127.0.0.1:1/", secret_file: `+short+`}}
`), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = Check(cfg)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"x.yaml: subscribers.assignments_file: cannot read " + filepath.Join(dir, "missing.jsonl"),
		"x.yaml: subscribers.notify.template_file: " + tmpl,
		"x.yaml: subscribers.restrict.webhook.secret_file: " + short + ": the secret is shorter than 16 bytes",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
}
