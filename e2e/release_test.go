package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerfile is the Dockerfile as instructions, continuation lines joined.
type instr struct{ op, args string }

func readDockerfile(t *testing.T) []instr {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instr
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if cur == "" && (l == "" || l[0] == '#') {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`) + " "
			continue
		}
		cur += l
		op, args, _ := strings.Cut(cur, " ")
		out = append(out, instr{strings.ToUpper(op), strings.TrimSpace(args)})
		cur = ""
	}
	return out
}

var goBuildCmd = regexp.MustCompile(`CGO_ENABLED=0 go build [^\n&;]*\./cmd/xarfd`)

// buildCommand is the release build without its output path.
func buildCommand(t *testing.T, s, where string) string {
	t.Helper()
	m := goBuildCmd.FindString(s)
	if m == "" {
		t.Fatalf("%s: no \"CGO_ENABLED=0 go build ... ./cmd/xarfd\"", where)
	}
	return regexp.MustCompile(`-o \S+ `).ReplaceAllString(m, "-o OUT ")
}

// TestDockerfile checks the image's recipe (there is no container engine
// on the test machines, so the image itself is not built): a Go 1.26
// builder, the release build command, a distroless static base, a
// non-root user, the data volume, the ports, a HEALTHCHECK the binary
// answers, and a configuration that validates. Then it runs the
// Dockerfile's build command and checks the binary is static.
func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	var froms, runs []string
	byOp := map[string][]string{}
	for _, in := range ins {
		byOp[in.op] = append(byOp[in.op], in.args)
		switch in.op {
		case "FROM":
			froms = append(froms, in.args)
		case "RUN":
			runs = append(runs, in.args)
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:1.26 ") || !strings.HasPrefix(froms[1], "gcr.io/distroless/static") {
		t.Errorf("stages %q: want golang:1.26 then distroless/static", froms)
	}
	if u := byOp["USER"]; len(u) != 1 || strings.HasPrefix(u[0], "root") || strings.HasPrefix(u[0], "0") {
		t.Errorf("USER %q: want a non-root user", u)
	}
	if v := byOp["VOLUME"]; len(v) != 1 || !strings.Contains(v[0], `"/var/lib/xarfd"`) {
		t.Errorf("VOLUME %q", v)
	}
	if e := byOp["EXPOSE"]; len(e) != 1 || e[0] != "2525 8025" {
		t.Errorf("EXPOSE %q: want 2525 8025", e)
	}
	hc := byOp["HEALTHCHECK"]
	if len(hc) != 1 || !strings.Contains(hc[0], `CMD ["/usr/bin/xarfd", "healthcheck"`) {
		t.Errorf("HEALTHCHECK %q: want the binary's healthcheck command", hc)
	}
	if c := byOp["CMD"]; len(c) != 1 || c[0] != `["serve", "-config", "/etc/xarfd/xarfd.yaml"]` {
		t.Errorf("CMD %q", c)
	}
	copied := false
	for _, c := range byOp["COPY"] {
		if c == "packaging/container/xarfd.yaml /etc/xarfd/xarfd.yaml" {
			copied = true
		}
	}
	if !copied {
		t.Error("the image's configuration is not packaging/container/xarfd.yaml")
	}
	// The image's configuration: valid, SMTP on the exposed port, data in the volume.
	code, out, errs := runXarfd(t, "check-config", "-config", "../packaging/container/xarfd.yaml")
	if code != 0 || !strings.Contains(out, "0.0.0.0:2525") || !strings.Contains(out, "data_dir: /var/lib/xarfd") {
		t.Errorf("check-config of the image's configuration: exit %d\n%s%s", code, out, errs)
	}

	release, err := os.ReadFile("../scripts/release")
	if err != nil {
		t.Fatal(err)
	}
	docker := buildCommand(t, strings.Join(runs, "\n"), "Dockerfile")
	if rel := buildCommand(t, string(release), "scripts/release"); rel != docker {
		t.Errorf("the Dockerfile builds with\n  %s\nscripts/release with\n  %s", docker, rel)
	}

	// Run the Dockerfile's build command here.
	bin := filepath.Join(t.TempDir(), "xarfd")
	cmd := exec.Command("sh", "-c", strings.Replace(docker, "-o OUT ", "-o "+bin+" ", 1))
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", docker, err, out)
	}
	checkReleaseBinary(t, bin)
}

// checkReleaseBinary: static, built with -trimpath and without cgo, and
// stamped with the VCS revision when built from a git checkout.
func checkReleaseBinary(t *testing.T, bin string) {
	t.Helper()
	out, err := exec.Command(packagingTool(t, "file"), bin).Output()
	if err != nil || !strings.Contains(string(out), "statically linked") {
		t.Errorf("file %s: %v %s", bin, err, out)
	}
	out, err = exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	info := string(out)
	for _, want := range []string{"build\t-trimpath=true", "build\tCGO_ENABLED=0"} {
		if !strings.Contains(info, want) {
			t.Errorf("go version -m: no %q in\n%s", want, info)
		}
	}
	// Go stamps VCS data only where .git is a directory (not in a git
	// worktree, whose .git is a file): CI's fresh clone has one.
	if fi, err := os.Stat("../.git"); err == nil && fi.IsDir() {
		if !strings.Contains(info, "vcs.revision=") {
			t.Errorf("no VCS revision in the build info:\n%s", info)
		}
	} else {
		t.Log("not a plain git checkout: the VCS stamp is not checked")
	}
}

// TestReleaseScript runs scripts/release for linux/amd64 (the arm64
// build is the same command with another GOARCH) into a temporary
// directory, then checks the tarball, its checksum, its binary, and
// install.sh into a staging root.
func TestReleaseScript(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command("../scripts/release", out)
	cmd.Env = append(os.Environ(), "XARFD_RELEASE_ARCHES=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release: %v\n%s", err, b)
	}
	tarballs, _ := filepath.Glob(filepath.Join(out, "xarfd-*-linux-amd64.tar.gz"))
	if len(tarballs) != 1 {
		t.Fatalf("tarballs: %v", tarballs)
	}
	sums := exec.Command("sha256sum", "-c", "SHA256SUMS")
	sums.Dir = out
	if b, err := sums.CombinedOutput(); err != nil || !strings.Contains(string(b), filepath.Base(tarballs[0])+": OK") {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
	name := strings.TrimSuffix(filepath.Base(tarballs[0]), ".tar.gz")
	list, err := exec.Command("tar", "-tzvf", tarballs[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"xarfd", "install.sh", "man/xarfd.8", "man/xarfd.yaml.5", "systemd/xarfd.service",
		"systemd/xarfd.sysusers", "xarfd.yaml.sample", "monitoring/xarfd.json", "monitoring/alerts.yml", "README.md"} {
		if !strings.Contains(string(list), " "+name+"/"+f+"\n") {
			t.Errorf("%s lacks %s:\n%s", filepath.Base(tarballs[0]), f, list)
		}
	}
	lines := strings.Split(strings.TrimSpace(string(list)), "\n")
	for _, l := range lines {
		if !strings.Contains(l, " 0/0 ") {
			t.Errorf("not owned by 0/0: %s", l)
		}
	}
	if len(lines) != 14 { // 10 files, 3 directories and the top one
		t.Errorf("%d entries, want 14:\n%s", len(lines), list)
	}

	unpacked := t.TempDir()
	if b, err := exec.Command("tar", "-xzf", tarballs[0], "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v %s", err, b)
	}
	dir := filepath.Join(unpacked, name)
	checkReleaseBinary(t, filepath.Join(dir, "xarfd"))
	// The version in the name is the binary's own.
	v, err := exec.Command(filepath.Join(dir, "xarfd"), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The first line of `xarfd version` is "xarfd <version>"; a build
	// without a module version says "rev-<revision>" or "unknown (…)"
	// where scripts/release writes "devel-<revision>" or "devel-unknown".
	first, _, _ := strings.Cut(strings.TrimSpace(string(v)), "\n")
	ver := strings.TrimPrefix(first, "xarfd ")
	switch {
	case strings.HasPrefix(ver, "unknown"):
		ver = "devel-unknown"
	case strings.HasPrefix(ver, "rev-"):
		ver = "devel-" + strings.TrimSuffix(strings.TrimPrefix(ver, "rev-"), "+dirty")
	}
	if name != "xarfd-"+ver+"-linux-amd64" {
		t.Errorf("tarball %s, binary says %q", name, v)
	}
	code, _, errs := runXarfd(t, "check-config", "-config", filepath.Join(dir, "xarfd.yaml.sample"))
	if code != 0 {
		t.Errorf("the sample configuration does not validate: %s", errs)
	}

	root := t.TempDir()
	inst := exec.Command("sh", filepath.Join(dir, "install.sh"))
	inst.Env = append(os.Environ(), "DESTDIR="+root)
	if b, err := inst.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, b)
	}
	for _, f := range []string{"usr/local/bin/xarfd", "usr/local/share/man/man8/xarfd.8", "usr/local/share/man/man5/xarfd.yaml.5",
		"etc/systemd/system/xarfd.service", "usr/lib/sysusers.d/xarfd.conf", "etc/xarfd/xarfd.yaml"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("install.sh did not install %s: %v", f, err)
		}
	}
	// A second run keeps an edited configuration.
	conf := filepath.Join(root, "etc/xarfd/xarfd.yaml")
	os.WriteFile(conf, []byte("edited"), 0o640)
	again := exec.Command("sh", filepath.Join(dir, "install.sh"))
	again.Env = inst.Env
	if b, err := again.CombinedOutput(); err != nil {
		t.Fatalf("install.sh again: %v\n%s", err, b)
	}
	if b, _ := os.ReadFile(conf); string(b) != "edited" {
		t.Error("a second install.sh replaced the configuration")
	}
}
