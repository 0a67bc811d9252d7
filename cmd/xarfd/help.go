package main

//go:generate go run ../../packaging/man/mangen -root ../..

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// cmdHelp prints the command list, or one command's synopsis and
// description (generated from docs/man/xarfd.8.md, the source of the
// manual page) followed by its flags as the command itself defines them.
func cmdHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if len(args) > 1 {
		fmt.Fprintln(stderr, "usage: xarfd help [COMMAND]")
		return 2
	}
	synopsis, text, ok := helpTopic(args[0])
	if !ok {
		fmt.Fprintf(stderr, "xarfd help: unknown command %q; commands: %s\n", args[0], strings.Join(helpTopicNames(), ", "))
		return 2
	}
	fmt.Fprintf(stdout, "usage: %s\n\n%s\n", synopsis, text)
	if flags := commandFlags(args[0]); flags != "" {
		fmt.Fprintf(stdout, "\nflags:\n%s", flags)
	}
	return 0
}

// commandFlags is what the command prints for -h, less its usage line:
// the flag set's own listing, so it cannot disagree with the code.
func commandFlags(name string) string {
	if name == "help" || name == "version" {
		return ""
	}
	var out bytes.Buffer
	run([]string{name, "-h"}, io.Discard, &out)
	var b strings.Builder
	for _, l := range strings.SplitAfter(out.String(), "\n") {
		// flag.PrintDefaults: "  -name type" then "    \tusage".
		if strings.HasPrefix(l, "  -") || strings.HasPrefix(l, "    \t") {
			b.WriteString(l)
		}
	}
	return b.String()
}
