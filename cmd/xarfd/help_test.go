package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every command of the usage list is documented in xarfd(8), and every
// flag a command defines appears in its section there.
func TestHelpCoversEveryCommandAndFlag(t *testing.T) {
	man, err := os.ReadFile("../../docs/man/xarfd.8.md")
	if err != nil {
		t.Fatal(err)
	}
	cmdLine := regexp.MustCompile(`(?m)^  ([a-z][a-z-]*)( |$)`)
	listed := cmdLine.FindAllStringSubmatch(usage, -1)
	if len(listed) < 8 {
		t.Fatalf("found only %d commands in the usage text", len(listed))
	}
	for _, m := range listed {
		name := m[1]
		synopsis, text, ok := helpTopic(name)
		if !ok {
			t.Errorf("command %q has no \"### %s\" section in docs/man/xarfd.8.md (then go generate ./cmd/xarfd)", name, name)
			continue
		}
		var out, errb bytes.Buffer
		if code := run([]string{"help", name}, &out, &errb); code != 0 {
			t.Errorf("xarfd help %s: exit %d, %s", name, code, errb.String())
		}
		if !strings.HasPrefix(out.String(), "usage: "+synopsis+"\n\n"+text) {
			t.Errorf("xarfd help %s prints:\n%s", name, out.String())
		}
		section := manSection(string(man), name)
		for _, f := range commandFlagNames(name) {
			if !strings.Contains(section, "-"+f+" ") && !strings.Contains(section, "-"+f+"]") && !strings.Contains(section, "`-"+f+"`") {
				t.Errorf("flag -%s of %q is not in its section of docs/man/xarfd.8.md", f, name)
			}
			if !strings.Contains(out.String(), "  -"+f) {
				t.Errorf("xarfd help %s does not list -%s:\n%s", name, f, out.String())
			}
		}
	}
}

// manSection is the text of "### name" up to the next heading.
func manSection(md, name string) string {
	_, s, ok := strings.Cut(md, "\n### "+name+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(s, "\n#"); i >= 0 {
		s = s[:i]
	}
	return s
}

// commandFlagNames runs the command with -h and reads the flag names.
func commandFlagNames(name string) []string {
	var errb bytes.Buffer
	run([]string{name, "-h"}, &bytes.Buffer{}, &errb)
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`).FindAllStringSubmatch(errb.String(), -1) {
		names = append(names, m[1])
	}
	return names
}

func TestHelpUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"help", "no-such"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "no-such") {
		t.Fatalf("exit %d, %q", code, errb.String())
	}
}
