package e2e

// Tests of what an operator sees of the daemon as a whole: the version,
// the start summary, the log level, the one preparation step shared by
// check-config and serve, and configuration reload on SIGHUP.

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
