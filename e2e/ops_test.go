package e2e

// Tests of what an operator sees of the daemon as a whole: the version,
// the start summary, the log level, the one preparation step shared by
// check-config and serve, and configuration reload on SIGHUP.

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/auth/authtest"
)

// copyModule copies the module's source tree (no .git, no data) to dst.
func copyModule(t *testing.T, dst string) {
	t.Helper()
	src, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		switch {
		case d.Name() == ".git" && d.IsDir(), d.Name() == "xarfd-data" && d.IsDir():
			return filepath.SkipDir
		case d.Name() == ".git":
			// A git worktree's .git is a file pointing at the real
			// repository: copied, the git commands below would commit
			// into that repository.
			return nil
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func runIn(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if name == "git" {
		// Pin git to dir's own repository, whatever surrounds dir.
		cmd.Env = append(cmd.Env, "GIT_DIR="+filepath.Join(dir, ".git"), "GIT_WORK_TREE="+dir,
			"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.net",
			"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.net")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestVersionFromCheckout builds xarfd the way a release is built, with
// go build in a git checkout, and checks that `xarfd version` names the
// commit (and says when the tree was modified) instead of "devel".
func TestVersionFromCheckout(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: cannot make a checkout to build from")
	}
	if testing.Short() {
		t.Skip("builds xarfd twice")
	}
	dir := t.TempDir()
	copyModule(t, dir)
	runIn(t, dir, "git", "init", "-q")
	runIn(t, dir, "git", "add", "-A")
	runIn(t, dir, "git", "commit", "-q", "-m", "release")
	rev := strings.TrimSpace(runIn(t, dir, "git", "rev-parse", "HEAD"))
	bin := filepath.Join(dir, "xarfd-bin")

	build := func() string {
		// -buildvcs=true on the command line wins over a GOFLAGS that
		// turns it off, as release scripts should make sure.
		runIn(t, dir, "go", "build", "-buildvcs=true", "-o", bin, "./cmd/xarfd")
		return runIn(t, dir, bin, "version")
	}
	out := build()
	first, _, _ := strings.Cut(out, "\n")
	if strings.Contains(out, "devel") || strings.Contains(out, "unknown") ||
		!strings.HasPrefix(first, "xarfd v") || !strings.Contains(first, rev[:12]) || strings.Contains(first, "dirty") {
		t.Errorf("clean checkout: want the pseudo-version of %s, got:\n%s", rev, out)
	}
	if !strings.Contains(out, "revision "+rev+"\n") {
		t.Errorf("clean checkout: want the full revision %s on its own line, got:\n%s", rev, out)
	}

	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = build()
	first, _, _ = strings.Cut(out, "\n")
	if !strings.HasSuffix(first, "+dirty") || !strings.Contains(out, "revision "+rev+" (modified") {
		t.Errorf("modified checkout: want +dirty and the modified flag, got:\n%s", out)
	}
}

// waitLog waits until the daemon has logged a line with message msg after
// the first skip such lines, and returns it.
func waitLog(t *testing.T, d *daemon, msg string, skip int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, line := range strings.Split(d.logs.String(), "\n") {
			var ev struct{ Message string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == msg {
				if n == skip {
					return line
				}
				n++
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("xarfd exited (%v) while waiting for %q:\n%s", d.err, msg, d.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %q line in the log:\n%s", msg, d.logs.String())
	return ""
}

const reloadBefore = `
hostname: mx.e2e.example
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
channels:
  - name: fbl
    kind: arf
    addresses: ["fbl@e2e.example"]
  - name: trap
    kind: trap
    addresses: ["*@trap.e2e.example"]
    redact: {recipients: true}
`

// TestReloadOnSIGHUP reloads a running daemon: a new channel address is
// accepted and a removed one refused, a transaction open across the
// reload completes with the configuration it began with, and a broken
// file is refused with check-config's errors while the daemon goes on
// with the configuration in force.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, reloadBefore)
	d := startDaemon(t, dir, "-config", path)
	waitLog(t, d, "xarfd started", 0)

	// A transaction in progress: the recipient routes to fbl.
	open, err := smtp.Dial(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := open.Hello("client.e2e.example"); err != nil {
		t.Fatal(err)
	}
	if err := open.Mail("bounce@origin.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := open.Rcpt("fbl@e2e.example", nil); err != nil {
		t.Fatal(err)
	}

	after := strings.Replace(reloadBefore, `name: fbl
    kind: arf
    addresses: ["fbl@e2e.example"]`, `name: fresh
    kind: arf
    addresses: ["fresh@e2e.example"]`, 1)
	writeConfig(t, dir, after)
	d.cmd.Process.Signal(syscall.SIGHUP)
	line := waitLog(t, d, "configuration reloaded", 0)
	if m := apiDo(t, "GET", httpAddr(t, d)+"/metrics", "", "", nil); !strings.Contains(string(m.body), "\nxarfd_config_last_reload_successful 1\n") {
		t.Errorf("a successful reload is not visible in /metrics:\n%s", m.body)
	}
	if !strings.Contains(line, `"name":"fresh"`) || strings.Contains(line, `"name":"fbl"`) {
		t.Errorf("reload summary does not show the new channels: %s", line)
	}

	// The open transaction finishes under the configuration it began with.
	w, err := open.Data()
	if err != nil {
		t.Fatalf("DATA of the transaction open across the reload: %v", err)
	}
	w.Write([]byte("From: fbl@reporter.example\r\nSubject: complaint\r\n\r\nbody\r\n"))
	if resp, err := w.CloseWithResponse(); err != nil || !strings.Contains(resp.StatusText, "queued as") {
		t.Fatalf("transaction open across the reload: %v %+v", err, resp)
	}
	open.Quit()

	if _, err := send(d.addr, "a@origin.example", []string{"fbl@e2e.example"}, []byte("Subject: x\r\n\r\nx\r\n")); smtpErr(err) != "550 5.1.1" {
		t.Errorf("removed channel address after reload: %v, want 550 5.1.1", err)
	}
	if _, err := send(d.addr, "a@origin.example", []string{"fresh@e2e.example"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Errorf("new channel address after reload: %v", err)
	}

	// A broken file: refused, logged with the file, line and key, and
	// the daemon goes on with what it had.
	broken := strings.Replace(after, "kind: trap", "kind: mbox", 1)
	writeConfig(t, dir, broken)
	d.cmd.Process.Signal(syscall.SIGHUP)
	line = waitLog(t, d, "configuration reload refused: the running configuration stays", 0)
	if !strings.Contains(line, path+":9: channels[1].kind: \\\"mbox\\\": want arf or trap") {
		t.Errorf("refusal does not name file, line and key: %s", line)
	}
	_, _, stderr := runXarfd(t, "check-config", "-config", path)
	if first, _, _ := strings.Cut(stderr, "\n"); !strings.Contains(line, strings.ReplaceAll(first, `"`, `\"`)) {
		t.Errorf("reload error differs from check-config's %q: %s", first, line)
	}
	if _, err := send(d.addr, "a@origin.example", []string{"fresh@e2e.example"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Errorf("after a refused reload: %v", err)
	}
	if m := apiDo(t, "GET", httpAddr(t, d)+"/metrics", "", "", nil); !strings.Contains(string(m.body), "\nxarfd_config_last_reload_successful 0\n") {
		t.Errorf("a refused reload is not visible in /metrics:\n%s", m.body)
	}
	if _, err := send(d.addr, "a@origin.example", []string{"fbl@e2e.example"}, []byte("Subject: x\r\n\r\nx\r\n")); smtpErr(err) != "550 5.1.1" {
		t.Errorf("after a refused reload the removed address came back: %v", err)
	}
	d.stop()
}

// TestCheckConfigAndServeAgree runs check-config and serve on files that
// validate but name a resource serve cannot use: both refuse them, with
// the same error naming the file, line and key.
func TestCheckConfigAndServeAgree(t *testing.T) {
	dir := t.TempDir()
	cert, key := authtest.Cert(t, dir)
	users, err := os.ReadFile("../auth/testdata/users")
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users")
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(usersFile, users, 0o600)
	os.WriteFile(garbage, []byte("this is not PEM\n"), 0o600)
	_, dk, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(dk)
	dkim := filepath.Join(dir, "dkim.pem")
	os.WriteFile(dkim, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	base := func(tlsCert, authUsers, dkimKey string) string {
		return `hostname: mx.e2e.example
data_dir: ` + filepath.Join(dir, "data") + `
sender: {org: E2E, contact: abuse@e2e.example, domain: e2e.example}
smtp:
  listen: ["127.0.0.1:0"]
  tls: {cert_file: ` + tlsCert + `, key_file: ` + key + `}
  auth_file: ` + usersFile + `
http: {listen: "127.0.0.1:0"}
channels:
  - name: partners
    kind: arf
    addresses: ["partner@e2e.example"]
    accept_from: {users: [` + authUsers + `]}
reporter:
  dkim: {domain: e2e.example, selector: s1, private_key_file: ` + dkimKey + `}
`
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(base(cert, "partner1", dkim)), 0o600)
	if code, _, stderr := runXarfd(t, "check-config", "-config", good); code != 0 {
		t.Fatalf("the good file: exit %d\n%s", code, stderr)
	}

	cases := []struct{ name, yaml, want string }{
		{"user missing from the auth file", base(cert, "partner1, ghost", dkim),
			":13: channels[0].accept_from.users[1]: \"ghost\" is not a user of smtp.auth_file " + usersFile},
		{"missing TLS certificate", base(filepath.Join(dir, "nonexistent.pem"), "partner1", dkim),
			":6: smtp.tls.cert_file: cannot read " + filepath.Join(dir, "nonexistent.pem") + ": no such file or directory"},
		{"garbage TLS certificate", base(garbage, "partner1", dkim),
			":6: smtp.tls: certificate " + garbage + " and key " + key + ":"},
		{"missing DKIM key", base(cert, "partner1", filepath.Join(dir, "nonexistent.key")),
			":15: reporter.dkim.private_key_file: cannot read " + filepath.Join(dir, "nonexistent.key")},
		{"garbage DKIM key", base(cert, "partner1", garbage),
			":15: reporter.dkim.private_key_file: " + garbage + ": no PEM block"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("bad%d.yaml", i))
			os.WriteFile(path, []byte(tc.yaml), 0o600)
			want := path + tc.want
			code, _, checkErr := runXarfd(t, "check-config", "-config", path)
			if code != 1 || !strings.Contains(checkErr, want) {
				t.Errorf("check-config: exit %d, want 1 and %q in:\n%s", code, want, checkErr)
			}
			code, _, serveErr := runXarfd(t, "serve", "-config", path)
			if code != 1 || !strings.Contains(serveErr, want) {
				t.Errorf("serve: exit %d, want 1 and %q in:\n%s", code, want, serveErr)
			}
			if checkErr != serveErr {
				t.Errorf("check-config and serve disagree:\n%s\n%s", checkErr, serveErr)
			}
		})
	}
}

// TestStartSummaryAndLogLevel checks the one line an operator reads at
// start, and that log.level and -log-level decide whether health probes
// are logged.
func TestStartSummaryAndLogLevel(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, reloadBefore+"log: {level: debug}\n")
	d := startDaemon(t, dir, "-config", path)
	var sum struct {
		Version  string
		Channels []struct {
			Name, Kind string
			Uses       []string
			Redacts    bool
		}
		SMTP       []string
		HTTP       string
		Reporter   string
		LogLevel   string `json:"log_level"`
		Data       string
		StoreBytes int64 `json:"store_bytes"`
	}
	if err := json.Unmarshal([]byte(waitLog(t, d, "xarfd started", 0)), &sum); err != nil {
		t.Fatal(err)
	}
	base := httpAddr(t, d)
	if sum.Version == "" || len(sum.Channels) != 2 || sum.Channels[1].Name != "trap" || sum.Channels[1].Kind != "trap" ||
		!sum.Channels[1].Redacts || strings.Join(sum.Channels[0].Uses, ",") != "report,store" ||
		len(sum.SMTP) != 1 || sum.SMTP[0] != d.addr || "http://"+sum.HTTP != base || sum.Reporter != "dry-run" ||
		sum.LogLevel != "debug" || sum.Data != filepath.Join(dir, "data", "xarfd.db") || sum.StoreBytes <= 0 {
		t.Errorf("start summary: %+v", sum)
	}
	probe := func(d *daemon, base string) (healthz bool) {
		t.Helper()
		apiDo(t, "GET", base+"/healthz", "", "", nil)
		apiDo(t, "GET", base+"/api/v1/reports", "", "", nil) // logged at info, after the probe
		for range 200 {
			if strings.Contains(d.logs.String(), `"path":"/api/v1/reports"`) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return strings.Contains(d.logs.String(), `"path":"/healthz"`)
	}
	if !probe(d, base) {
		t.Errorf("log.level debug: no health probe logged:\n%s", d.logs.String())
	}
	d.stop()

	d = startDaemon(t, dir, "-config", path, "-log-level", "info")
	if probe(d, httpAddr(t, d)) {
		t.Errorf("-log-level info: health probe logged:\n%s", d.logs.String())
	}
	d.stop()

	if code, _, stderr := runXarfd(t, "serve", "-config", path, "-log-level", "verbose"); code != 2 || !strings.Contains(stderr, "-log-level") {
		t.Errorf("bad -log-level: exit %d\n%s", code, stderr)
	}
}
