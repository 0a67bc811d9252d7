package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRenamedChannelIsOrphaned: data of a channel that the configuration
// no longer names is found at start (logged with its count and the
// retention that now applies) and listed as orphaned by the API. Before,
// nothing said so and retention never reached it.
func TestRenamedChannelIsOrphaned(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "-config", writeConfig(t, dir, baseConfig))
	body := []byte("Received: from x (x [198.51.100.20]) by mx; Fri, 27 Nov 2026 10:00:00 +0000\r\nSubject: cheap\r\n\r\nbuy\r\n")
	if _, err := send(d.addr, "spammer@origin.example", []string{"x@plain.e2e.example"}, body); err != nil {
		t.Fatal(err)
	}
	d.stop()

	renamed := strings.Replace(baseConfig, "name: plain", "name: plain-2", 1) + "retention_orphaned: 240h\n"
	d = startDaemon(t, dir, "-config", writeConfig(t, dir, renamed))
	defer d.stop()
	var warned bool
	for _, line := range strings.Split(d.logs.String(), "\n") {
		var ev struct {
			Level, Message, Channel string
			Records                 int
			RetentionOrphaned       string `json:"retention_orphaned"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && strings.HasPrefix(ev.Message, "stored channel is not in the configuration") {
			warned = ev.Level == "warn" && ev.Channel == "plain" && ev.Records == 1 && ev.RetentionOrphaned == "240h0m0s"
		}
	}
	if !warned {
		t.Errorf("no warning about the orphaned channel plain:\n%s", d.logs.String())
	}
	r := apiDo(t, "GET", httpAddr(t, d)+"/api/v1/channels", "", "", nil)
	var list struct {
		Channels []struct {
			Name       string
			Orphaned   bool
			Records    int
			Retention  string
			Configured bool
		}
	}
	if err := json.Unmarshal(r.body, &list); err != nil || r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	found := false
	for _, c := range list.Channels {
		if c.Name == "plain" {
			found = c.Orphaned && !c.Configured && c.Records == 1 && c.Retention == "240h0m0s"
		}
	}
	if !found {
		t.Errorf("plain not listed as orphaned: %s", r.body)
	}
}
