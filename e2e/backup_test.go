package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/store"
)

// runXarfdEnv is runXarfd with extra environment variables.
func runXarfdEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestBackupRestoreAndHealthcheck follows docs/man/xarfd.8.md: a backup
// of a running daemon with `xarfd backup`, restored into a fresh data
// directory, serves the reports the first daemon had stored.
func TestBackupRestoreAndHealthcheck(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "-config", writeConfig(t, dir, apiConfig()))
	base := httpAddr(t, d)

	if code, out, errs := runXarfd(t, "healthcheck", "-api", base); code != 0 || !strings.Contains(out, "healthy") {
		t.Fatalf("healthcheck of a running daemon: exit %d %s %s", code, out, errs)
	}
	ids, err := send(d.addr, "spammer@origin.example", []string{"victim@trap.e2e.example"}, trapMessage("backup-1"))
	if err != nil || len(ids) != 1 {
		t.Fatalf("send: %v %v", ids, err)
	}

	backups := t.TempDir()
	out := filepath.Join(backups, "xarfd.db")
	// Without a token the API refuses, and nothing is written.
	code, _, errs := runXarfdEnv(t, []string{"XARFD_TOKEN="}, "backup", "-api", base, "-o", out)
	if code != 1 || !strings.Contains(errs, "401") {
		t.Fatalf("backup without a token: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused backup left %s: %v", out, err)
	}
	// A read token is not enough.
	tokFile := filepath.Join(backups, "token")
	os.WriteFile(tokFile, []byte(e2eRead+"\n"), 0o600)
	if code, _, errs := runXarfd(t, "backup", "-api", base, "-token-file", tokFile, "-o", out); code != 1 || !strings.Contains(errs, "403") {
		t.Fatalf("backup with a read token: exit %d, %s", code, errs)
	}
	code, stdout, errs := runXarfdEnv(t, []string{"XARFD_TOKEN=" + e2eAdmin}, "backup", "-api", base, "-o", out)
	if code != 0 {
		t.Fatalf("backup: exit %d, %s", code, errs)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 || !strings.Contains(stdout, out) {
		t.Fatalf("backup file: %v %v; %q", fi.Mode(), err, stdout)
	}
	if entries, _ := os.ReadDir(backups); len(entries) != 2 { // the backup and the token file
		t.Fatalf("temporary files left beside the backup: %v", entries)
	}
	d.stop()
	if code, _, errs := runXarfd(t, "healthcheck", "-api", base, "-timeout", "5s"); code != 1 || errs == "" {
		t.Fatalf("healthcheck of a stopped daemon: exit %d %q", code, errs)
	}

	// Restore into a new data directory, check it, start on it.
	dir2 := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir2, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir2, "data", store.FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// check-store (docs/man/xarfd.8.md, BACKUP AND RESTORE) where this
	// build has it; the restarted daemon below checks every record anyway.
	if code, _, errs := runXarfd(t, "check-store", "-data", filepath.Join(dir2, "data")); !strings.Contains(errs, "unknown command") {
		if code != 0 {
			t.Fatalf("check-store of the restored backup: exit %d, %s", code, errs)
		}
	} else {
		t.Log("this build has no check-store yet: the restore is checked by the daemon alone")
	}
	d2 := startDaemon(t, dir2, "-config", writeConfig(t, dir2, apiConfig()))
	base2 := httpAddr(t, d2)
	if r := apiDo(t, "GET", base2+"/api/v1/reports/"+ids[0].String(), e2eRead, "", nil); r.code != 200 || !strings.Contains(string(r.body), ids[0].String()) {
		t.Fatalf("the restored daemon does not serve report %s: %d %s", ids[0], r.code, r.body)
	}
	if strings.Contains(d2.logs.String(), "quarantine at start") {
		t.Fatalf("the restored store had unreadable records:\n%s", d2.logs.String())
	}
	d2.stop()
}
