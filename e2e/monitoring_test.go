package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// metricRef finds metric names in PromQL: ours, the Go runtime's and
// the process collector's.
var metricRef = regexp.MustCompile(`\b(?:xarfd|go|process)_[a-zA-Z0-9_]+\b`)

// alertExprs reads the expressions of packaging/prometheus/alerts.yml.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../packaging/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	out := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Fatalf("alerts.yml: a rule without alert or expr: %+v", r)
			}
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// dashboardExprs reads every query of packaging/grafana/xarfd.json.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../packaging/grafana/xarfd.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Panels []struct {
			ID         int
			Type       string
			Title      string
			GridPos    *struct{ H, W, X, Y int }
			Targets    []struct{ Expr string }
			Datasource *struct{ UID string }
		}
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("xarfd.json: %v", err)
	}
	out := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.GridPos == nil || p.GridPos.W == 0 {
			t.Errorf("panel %q: duplicate id %d or no grid position", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: no query on the dashboard's data source", p.Title)
		}
		for i, tg := range p.Targets {
			out[p.Title+"#"+string(rune('A'+i))] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			out["variable "+v.Name] = v.Definition
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(out))
	}
	return out
}

// TestMonitoringUsesRealMetrics: every metric the dashboard and the
// alert rules name is in /metrics of a running daemon that has taken
// one message.
func TestMonitoringUsesRealMetrics(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "-config", writeConfig(t, dir, baseConfig))
	base := httpAddr(t, d)
	if _, err := send(d.addr, "spammer@origin.example", []string{"victim@trap.e2e.example"}, trapMessage("monitoring")); err != nil {
		t.Fatal(err)
	}
	// The reporter takes the report from the outbox (withheld: the
	// origin is a documentation address) on its own time; wait for it.
	var body []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "\nxarfd_deliveries_total{") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(body), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(l, "{")
		name, _, _ = strings.Cut(name, " ")
		have[name] = true
	}
	for _, want := range []string{"xarfd_channel_last_report_timestamp_seconds", "xarfd_data_dir_free_bytes", "xarfd_store_size_bytes"} {
		if !have[want] {
			t.Errorf("%s missing from /metrics", want)
		}
	}
	// Every configured channel has a last-report time: the report just
	// sent for trap, the start of the 7-day look-back for the others.
	now := float64(time.Now().Unix())
	for ch, want := range map[string]float64{"trap": now, "fbl": now - 7*24*3600, "plain": now - 7*24*3600} {
		m := regexp.MustCompile(`\nxarfd_channel_last_report_timestamp_seconds\{channel="` + ch + `"\} (\S+)`).FindSubmatch(body)
		if m == nil {
			t.Errorf("no last-report time for channel %s", ch)
			continue
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil || v < want-120 || v > want+5 {
			t.Errorf("channel %s: last report at %s, want about %.0f", ch, m[1], want)
		}
	}

	check := func(file string, exprs map[string]string) {
		var used []string
		for where, e := range exprs {
			names := metricRef.FindAllString(e, -1)
			if len(names) == 0 && !strings.Contains(e, "up{") {
				t.Errorf("%s: %s: names no metric: %s", file, where, e)
			}
			for _, n := range names {
				if !have[n] {
					t.Errorf("%s: %s uses %s, which /metrics does not have", file, where, n)
				}
				used = append(used, n)
			}
		}
		slices.Sort(used)
		t.Logf("%s uses %d metrics: %v", file, len(slices.Compact(used)), slices.Compact(used))
	}
	check("alerts.yml", alertExprs(t))
	check("xarfd.json", dashboardExprs(t))
	d.stop()
}

// TestAlertRulesPromtool: promtool accepts the rules, and its unit tests
// (alerts_test.yml) show each alert firing on the series meant to raise
// it and staying quiet on healthy ones.
func TestAlertRulesPromtool(t *testing.T) {
	promtool := packagingTool(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../packaging/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has a test case.
	b, err := os.ReadFile("../packaging/prometheus/alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name := range alertExprs(t) {
		if !strings.Contains(string(b), "alertname: "+name+"\n") {
			t.Errorf("alert %s has no case in alerts_test.yml", name)
		}
	}
}
