package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveRefused runs `xarfd serve` and wants it to exit non-zero by itself
// (within a minute) with a message naming the file and the way to
// restore; the file must be left as it was.
func serveRefused(t *testing.T, dir, cfg, file string) {
	t.Helper()
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "-config", cfg)
	cmd.Dir = dir
	var logs bytes.Buffer
	cmd.Stderr = &logs
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("xarfd kept running on a damaged store:\n%s", tail(logs.String(), 20))
	}
	if err == nil {
		t.Fatalf("xarfd exited 0 on a damaged store:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), file) || !strings.Contains(logs.String(), "restore the last backup") {
		t.Errorf("the refusal does not name %s and the remedy:\n%s", file, logs.String())
	}
	if strings.Contains(logs.String(), "http listening") || strings.Contains(logs.String(), "smtp listening") {
		t.Errorf("xarfd listened on a damaged store:\n%s", logs.String())
	}
	after, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("xarfd changed the damaged file (%d bytes, was %d)", len(after), len(before))
	}
}

// seedStore runs the daemon once, submits n messages to the plain
// channel over the API, stops it and returns their ids.
func seedStore(t *testing.T, dir, cfg string, n int) []string {
	t.Helper()
	d := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, d)
	var ids []string
	for i := range n {
		r := apiDo(t, "POST", base+"/api/v1/channels/plain/messages", "", "message/rfc822", trapMessage(fmt.Sprintf("marker%04d", i)))
		if r.code != 202 {
			t.Fatalf("submission: %d %s", r.code, r.body)
		}
		var res struct{ ID string }
		json.Unmarshal(r.body, &res)
		ids = append(ids, res.ID)
	}
	d.stop()
	return ids
}

func TestDamagedStoreRefusedAtStart(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, file string){
		"empty file": func(t *testing.T, file string) {
			if err := os.Truncate(file, 0); err != nil {
				t.Fatal(err)
			}
		},
		"truncated file": func(t *testing.T, file string) {
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(file, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeConfig(t, dir, baseConfig)
			seedStore(t, dir, cfg, 20)
			file := filepath.Join(dir, "data", "xarfd.db")
			damage(t, file)
			serveRefused(t, dir, cfg, file)
			code, out, _ := runXarfd(t, "check-store", "-data", filepath.Join(dir, "data"))
			if code != 1 || !strings.Contains(out, "DAMAGED") || !strings.Contains(out, file) {
				t.Errorf("check-store: exit %d\n%s", code, out)
			}
		})
	}
}

// A flipped byte inside one stored message: the daemon starts (the rest
// of the store is fine), the API answers 500 without the bytes for that
// report, the log names its id, the metric counts; check-store names it
// and exits 1, and 0 on an undamaged store.
func TestDamagedRecordOverRealBinary(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, baseConfig)
	ids := seedStore(t, dir, cfg, 5)
	data := filepath.Join(dir, "data")
	if code, out, errOut := runXarfd(t, "check-store", "-data", data); code != 0 || !strings.Contains(out, "ok: 5 records") {
		t.Fatalf("check-store on a clean store: exit %d\n%s%s", code, out, errOut)
	}
	file := filepath.Join(data, "xarfd.db")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Every copy of the marker (bbolt leaves stale ones in freed pages).
	marker := []byte("marker0002")
	if !bytes.Contains(b, marker) {
		t.Fatal("marker not in the file")
	}
	b = bytes.ReplaceAll(b, marker, []byte("mArker0002"))
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runXarfd(t, "check-store", "-data", data)
	if code != 1 || !strings.Contains(out, ids[2]) || !strings.Contains(out, "checksum") {
		t.Errorf("check-store on a damaged record: exit %d\n%s", code, out)
	}

	d := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, d)
	// check-store refuses a store in use.
	if code, _, errOut := runXarfd(t, "check-store", "-data", data); code != 1 || !strings.Contains(errOut, "in use") {
		t.Errorf("check-store on a running store: exit %d %s", code, errOut)
	}
	r := apiDo(t, "GET", base+"/api/v1/reports/"+ids[2]+"/evidence", "", "", nil)
	if r.code != 500 || bytes.Contains(bytes.ToLower(r.body), []byte("marker")) || !strings.Contains(string(r.body), "damaged") {
		t.Errorf("evidence of the damaged record: %d %s", r.code, r.body)
	}
	if r := apiDo(t, "GET", base+"/api/v1/reports/"+ids[3]+"/evidence", "", "", nil); r.code != 200 || !bytes.Contains(r.body, []byte("marker0003")) {
		t.Errorf("evidence of an undamaged record: %d", r.code)
	}
	if !strings.Contains(d.logs.String(), `"id":"`+ids[2]+`"`) {
		t.Errorf("no log line names the damaged record %s", ids[2])
	}
	m := apiDo(t, "GET", base+"/metrics", "", "", nil)
	var n float64
	for _, line := range strings.Split(string(m.body), "\n") {
		if v, ok := strings.CutPrefix(line, "xarfd_store_damaged_records_total "); ok {
			fmt.Sscan(v, &n)
		}
	}
	if n < 1 {
		t.Errorf("xarfd_store_damaged_records_total = %v", n)
	}
	if !strings.Contains(string(m.body), "\nxarfd_store_healthy 1\n") {
		t.Error("xarfd_store_healthy is not 1: a damaged record is not a failing disk")
	}
	d.stop()
}

// A web page of another site posting to the daemon's API through the
// operator's browser: refused, nothing stored. The browser's headers are
// set by hand, as a browser would send them.
func TestCrossSitePostOverRealBinary(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir, "-config", writeConfig(t, dir, baseConfig))
	base := httpAddr(t, d)
	post := func(hdr map[string]string, host string) int {
		req, err := http.NewRequest("POST", base+"/api/v1/channels/plain/messages", bytes.NewReader(trapMessage("csrf")))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A form post: no Content-Type the API takes.
	if c := post(map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, ""); c != 403 && c != 415 {
		t.Errorf("cross-site form post: %d", c)
	}
	// Even with the right type (a no-cors fetch cannot set it, but a
	// browser bug or plugin might): refused on Sec-Fetch-Site / Origin.
	if c := post(map[string]string{"Content-Type": "message/rfc822", "Sec-Fetch-Site": "cross-site"}, ""); c != 403 {
		t.Errorf("cross-site fetch: %d, want 403", c)
	}
	if c := post(map[string]string{"Content-Type": "message/rfc822", "Origin": "https://evil.example"}, ""); c != 403 {
		t.Errorf("foreign Origin: %d, want 403", c)
	}
	// DNS rebinding: the page's own name resolving to 127.0.0.1.
	if c := post(map[string]string{"Content-Type": "message/rfc822"}, "rebind.evil.example:8025"); c != 421 {
		t.Errorf("foreign Host: %d, want 421", c)
	}
	// Without Content-Type.
	if c := post(map[string]string{}, ""); c != 415 {
		t.Errorf("no Content-Type: %d, want 415", c)
	}
	r := apiDo(t, "GET", base+"/api/v1/reports?channel=plain", "", "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), `"reports":[]`) {
		t.Errorf("a refused post was stored: %d %s", r.code, r.body)
	}
	// The same post from curl passes.
	if c := post(map[string]string{"Content-Type": "message/rfc822"}, ""); c != 202 {
		t.Errorf("plain client: %d, want 202", c)
	}
	d.stop()
}
