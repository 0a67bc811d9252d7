// Command xarfd receives abuse feedback reports and spam-trap mail over
// SMTP, stores them durably per channel and reports the abuse to the
// origin network. See README.md and docs/ for the whole picture.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: xarfd <command> [flags]

commands:
  serve [-config FILE]          run the daemon (no -config: the embedded default)
  check-config [-config FILE]   validate a configuration and print the effective one
  parse [-config FILE] [-channel NAME] [-peer IP[:PORT]] [-rcpt ADDR]... FILE...
                                run messages through the pipeline offline; print XARF as JSON Lines
  reports [-api URL] [-token-file FILE] [-channel NAME] [-source-ip IP] [-since T] [-limit N]
                                list stored reports through the HTTP API as JSON Lines
  check-store -data DIR         verify a stopped store offline; exit 1 naming what is damaged
  version                       print the version

Run "xarfd <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout, stderr)
	case "parse":
		return cmdParse(args[1:], os.Stdin, stdout, stderr)
	case "reports":
		return cmdReports(args[1:], stdout, stderr)
	case "check-store":
		return cmdCheckStore(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "xarfd", version())
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "xarfd: unknown command %q\n\n%s", args[0], usage)
	return 2
}
