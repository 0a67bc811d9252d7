package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xarfd/xarfd/store"
)

// cmdBackup fetches GET /api/v1/backup (a consistent copy of the live
// database) into a file. The file appears only complete: the bytes go to
// a temporary file beside it, whose length is checked against
// Content-Length and whose structure bbolt checks, then it is fsynced,
// renamed over the target and the directory fsynced. A failed backup
// leaves the previous one in place.
func cmdBackup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiURL := fs.String("api", "http://127.0.0.1:8025", "base `URL` of the xarfd HTTP API")
	tokenFile := fs.String("token-file", "", "read the bearer token (admin scope) from `file` (default: $XARFD_TOKEN)")
	out := fs.String("o", "", "write the backup to `file` (required; replaced atomically)")
	timeout := fs.Duration("timeout", time.Hour, "give up after this `duration`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "xarfd backup: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		return fail(2, "-o FILE is required")
	}
	base, err := apiBase(*apiURL)
	if err != nil {
		return fail(2, "%v", err)
	}
	tok, err := apiToken(*tokenFile)
	if err != nil {
		return fail(1, "%v", err)
	}
	n, err := backupTo(&http.Client{Timeout: *timeout}, base+"/api/v1/backup", tok, *out)
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(stdout, "%s: %d bytes\n", *out, n)
	return 0
}

// apiToken is the bearer token: the first line of file, else $XARFD_TOKEN.
func apiToken(file string) (string, error) {
	if file == "" {
		return os.Getenv("XARFD_TOKEN"), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("-token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func backupTo(client *http.Client, u, token, path string) (n int64, err error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			hint = " (an admin token is needed: set XARFD_TOKEN or -token-file)"
		}
		return 0, fmt.Errorf("GET %s: %s: %s%s", req.URL.Path, resp.Status, strings.TrimSpace(string(msg)), hint)
	}

	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("creating the temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if n, err = io.Copy(f, resp.Body); err != nil {
		return n, fmt.Errorf("receiving the backup after %d bytes: %w", n, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("backup cut short: %d of %d bytes", n, resp.ContentLength)
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err = store.CheckPages(tmp); err != nil {
		return n, fmt.Errorf("the received backup is damaged: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return n, fmt.Errorf("renaming the backup into place: %w", err)
	}
	if err = syncDir(dir); err != nil {
		return n, err
	}
	return n, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
