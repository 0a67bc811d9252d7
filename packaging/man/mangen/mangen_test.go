package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const root = "../../.."

// The committed man pages and help text are what the sources generate.
func TestGeneratedFilesUpToDate(t *testing.T) {
	files, err := generate(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("generated %d files, want 3", len(files))
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./cmd/xarfd)", path, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with its source: run go generate ./cmd/xarfd", path)
		}
	}
}

func TestRoff(t *testing.T) {
	md := "# x(8) — a test\n\nnote\n\n## Usage\n\n.dot starts a line, a \\ backslash, `-flag` code\n\n" +
		"| key | default | meaning |\n|---|---|---|\n| `a.b` | `1` | what \\| it is |\n\n    $ run -x\n    .hidden\n\n" +
		"1. first\n   continued\n2. second\n\nterm\n: its **meaning**, [link](https://example.org/)\n"
	got := manPage(page{name: "x", section: "8", manual: "M"}, md)
	for _, want := range []string{
		".TH \"X\" 8 \"\" \"xarfd\" \"M\"\n.SH NAME\nx \\- a test\n",
		".SH \"USAGE\"\n.PP\n\\&.dot starts a line, a \\e backslash, \\fB\\-flag\\fR code\n",
		".TP\n\\fBa.b\\fR\nwhat | it is\n.br\n\\fIdefault\\fR: \\fB1\\fR\n",
		".nf\n$ run \\-x\n\\&.hidden\n.fi\n",
		".IP \"1.\" 4\nfirst continued\n.IP \"2.\" 4\nsecond\n",
		".TP\nterm\nits \\fBmeaning\\fR, link <https://example.org/>\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "note") {
		t.Errorf("the note before the first section leaked into the page:\n%s", got)
	}
}

// man(1) renders the generated pages without warnings.
func TestPagesRender(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		if os.Getenv("XARFD_REQUIRE_PACKAGING_TOOLS") == "1" {
			t.Fatal("man(1) not found (scripts/test installs man-db)")
		}
		t.Skip("man(1) not installed: the pages' rendering is not checked (scripts/test installs it)")
	}
	for _, p := range pages() {
		cmd := exec.Command("man", "--warnings", "-l", filepath.Join(root, p.out))
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man %s: %v\n%s", p.out, err, stderr.String())
		}
		out = regexp.MustCompile(".\x08").ReplaceAll(out, nil) // overstrike bold
		if !bytes.Contains(out, []byte("NAME")) || len(out) < 2000 {
			t.Errorf("man %s rendered %d bytes:\n%s", p.out, len(out), out)
		}
	}
}

// FuzzManPage: any Markdown renders without panicking, and every output
// line that starts with a dot or an apostrophe is a request we wrote.
func FuzzManPage(f *testing.F) {
	for _, p := range pages() {
		if b, err := os.ReadFile(filepath.Join(root, p.src)); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("# a(1) — b\n\n## X\n\n| a |\n|--|\n| `x\\|y` |\n\nt\n: d\n\n1. x\n- y [l](u) **b** `c")
	f.Fuzz(func(t *testing.T, md string) {
		out := manPage(page{name: "x", section: "8", manual: "M"}, md)
		for _, l := range strings.Split(out, "\n") {
			if (strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'")) && !knownRequest(l) {
				t.Fatalf("unguarded line %q from %q", l, md)
			}
		}
		if _, err := helpTopics("x.md", md); err != nil && !strings.Contains(err.Error(), "x.md") {
			t.Fatalf("error without the file name: %v", err)
		}
	})
}

func knownRequest(l string) bool {
	for _, r := range []string{`.\"`, ".TH ", ".SH ", ".SS ", ".PP", ".RS ", ".RE", ".nf", ".fi", ".IP ", ".TP", ".br"} {
		if strings.HasPrefix(l, r) {
			return true
		}
	}
	return false
}
