// Command xarfd receives abuse feedback reports and spam-trap mail over
// SMTP, stores them durably per channel and reports the abuse to the
// origin network. See README.md and docs/ for the whole picture.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

const usage = `usage: xarfd <command> [flags]

commands:
  serve [-config FILE] [-log-level L]
                                run the daemon (no -config: the embedded default);
                                SIGHUP reloads the configuration
  check-config [-config FILE]   validate a configuration and the files it names, and
                                print the effective configuration
  parse [-config FILE] [-channel NAME] [-peer IP[:PORT]] [-rcpt ADDR]... FILE...
                                run messages through the pipeline offline; print XARF as JSON Lines
  reports [-api URL] [-token-file FILE] [-channel NAME] [-source-ip IP] [-since T] [-limit N]
                                list stored reports through the HTTP API as JSON Lines
  backup [-api URL] [-token-file FILE] -o FILE
                                write a consistent copy of the store through the HTTP API
  healthcheck [-api URL]        exit 0 if the daemon's /healthz answers 200, else 1
  cases [-api URL] [-token-file FILE] [-state S] [-subscriber ID]
                                list own-network cases through the HTTP API as JSON Lines
  version                       print the version, VCS revision and Go version
  check-store -data DIR         verify a stopped store offline; exit 1 naming what is damaged
  help [COMMAND]                this list, or one command's usage

Run "xarfd help <command>" for a command's usage and flags.
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
	case "backup":
		return cmdBackup(args[1:], stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(args[1:], stdout, stderr)
	case "check-store":
		return cmdCheckStore(args[1:], stdout, stderr)
	case "cases":
		return cmdCases(args[1:], stdout, stderr)
	case "version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "xarfd version takes no arguments\n")
			return 2
		}
		bi, ok := debug.ReadBuildInfo()
		printVersion(stdout, readBuildVersion(bi, ok))
		return 0
	case "help":
		return cmdHelp(args[1:], stdout, stderr)
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "xarfd: unknown command %q\n\n%s", args[0], usage)
	return 2
}
