package main

import (
	"flag"
	"fmt"
	"io"
)

func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `file` (default: the embedded default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, _, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "warning:", w)
	}
	out, err := cfg.YAML()
	if err != nil {
		fmt.Fprintf(stderr, "%s: rendering configuration: %v\n", cfg.Source, err)
		return 1
	}
	fmt.Fprintf(stdout, "# %s: ok; effective configuration:\n%s", cfg.Source, out)
	return 0
}
