// Package e2e runs the real xarfd binary against real clients on
// 127.0.0.1. TestMain builds the binary once (with -race when the tests
// run with it); each test starts its own daemon on port 0 with a
// temporary configuration and data directory, and learns the port from
// the daemon's "smtp listening" log line.
package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xarfd/xarfd/internal/syncbuf"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xarfd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "xarfd")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/xarfd/xarfd/cmd/xarfd")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building xarfd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// baseConfig is completed by config(): data_dir and listen are added.
const baseConfig = `
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
  - name: plain
    kind: trap
    addresses: ["*@plain.e2e.example"]
`

// writeConfig writes yaml plus a data_dir and port-0 listener into dir.
func writeConfig(t testing.TB, dir, yaml string) string {
	t.Helper()
	path := filepath.Join(dir, "xarfd.yaml")
	full := yaml + "\ndata_dir: " + filepath.Join(dir, "data") + "\nsmtp: {listen: [\"127.0.0.1:0\"]}\n"
	if !strings.Contains(yaml, "\nhttp:") {
		full += "http: {listen: \"127.0.0.1:0\"}\n"
	}
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string
	logs   *syncbuf.Buffer
	exited chan struct{}
	err    error // exit status, valid after exited is closed
}

// startDaemon runs `xarfd serve` with args in dir and waits until it
// listens.
func startDaemon(t testing.TB, dir string, args ...string) *daemon {
	t.Helper()
	return launch(t, dir, false, args...)
}

// launch starts the daemon; with skipBusy a daemon that cannot listen
// because another process holds its address skips the test instead of
// failing it (for fixed ports such as the embedded default's).
func launch(t testing.TB, dir string, skipBusy bool, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cmd: cmd, logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.logs.Write([]byte(line + "\n"))
			var ev struct {
				Message, Addr string
			}
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "smtp listening" {
				select {
				case addrc <- ev.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("daemon log (last lines):\n%s", tail(d.logs.String(), 40))
		}
	})
	select {
	case d.addr = <-addrc:
	case <-d.exited:
		if skipBusy && strings.Contains(d.logs.String(), "address already in use") {
			t.Skipf("skipping: another process took the daemon's fixed address first:\n%s", d.logs.String())
		}
		t.Fatalf("xarfd exited before listening: %v\n%s", d.err, d.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("xarfd did not listen within 30s:\n%s", d.logs.String())
	}
	return d
}

// stop sends SIGTERM and expects a clean exit 0.
func (d *daemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(40 * time.Second):
		d.t.Fatal("xarfd did not exit within 40s of SIGTERM")
	}
	if d.err != nil {
		d.t.Fatalf("xarfd exited with %v after SIGTERM; log:\n%s", d.err, d.logs.String())
	}
}

// kill sends SIGKILL: no chance to flush anything.
func (d *daemon) kill() {
	d.t.Helper()
	d.cmd.Process.Kill()
	<-d.exited
}

// runXarfd runs a non-serving subcommand and returns its exit code,
// stdout and stderr.
func runXarfd(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
