package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// packagingTool finds a tool the packaging checks need. scripts/test
// installs them and sets XARFD_REQUIRE_PACKAGING_TOOLS=1, so that in CI
// a missing tool fails instead of skipping.
func packagingTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("XARFD_REQUIRE_PACKAGING_TOOLS") == "1" {
			t.Fatalf("%s not found (scripts/test installs it)", name)
		}
		t.Skipf("%s not installed: run scripts/test, which installs it", name)
	}
	return p
}

// unitFile reads a systemd unit into section -> key -> values.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = strings.Trim(l, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, l)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

const unitPath = "../packaging/systemd/xarfd.service"

// TestSystemdUnitHardening: the unit has the options a reviewer expects.
func TestSystemdUnitHardening(t *testing.T) {
	s := unitFile(t, unitPath)["Service"]
	want := map[string]string{
		"Type": "notify", "ExecReload": "/bin/kill -HUP $MAINPID", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE", "User": "xarfd", "StateDirectory": "xarfd",
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "ProtectKernelTunables": "yes",
		"ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "RestrictNamespaces": "yes",
		"RestrictSUIDSGID": "yes", "PrivateDevices": "yes", "SystemCallArchitectures": "native",
	}
	for k, v := range want {
		if got := s[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%v, want %s", k, got, v)
		}
	}
	if f := s["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter=%v, want @system-service first", f)
	}
	if len(s["WatchdogSec"]) != 1 {
		t.Error("no WatchdogSec")
	}
	if !strings.HasSuffix(s["ExecStart"][0], "xarfd serve -config /etc/xarfd/xarfd.yaml") {
		t.Errorf("ExecStart=%v", s["ExecStart"])
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the unit, with
// ExecStart pointing at the binary under test and the generated manual
// pages on MANPATH (verify checks the Documentation= pages exist).
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := packagingTool(t, "systemd-analyze")
	packagingTool(t, "man")
	dir := t.TempDir()
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/xarfd", binary)
	path := filepath.Join(dir, "xarfd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	man := filepath.Join(dir, "man")
	for _, p := range []string{"xarfd.8", "xarfd.yaml.5"} {
		sect := filepath.Join(man, "man"+p[len(p)-1:])
		os.MkdirAll(sect, 0o755)
		b, err := os.ReadFile(filepath.Join("../packaging/man", p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sect, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(sa, "verify", path)
	cmd.Env = append(os.Environ(), "MANPATH="+man)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
