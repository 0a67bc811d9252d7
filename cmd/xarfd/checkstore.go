package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/xarfd/xarfd/store"
)

// cmdCheckStore verifies a stopped store: 0 when clean, 1 when damaged or
// when it could not be checked (in use, missing), 2 on bad usage.
func cmdCheckStore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "", "the data `directory` (data_dir of the configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: xarfd check-store -data DIR")
		return 2
	}
	rep, err := store.Check(*dir, 2*time.Second)
	if err != nil {
		fmt.Fprintln(stderr, "xarfd check-store:", err)
		if errors.Is(err, store.ErrInUse) {
			fmt.Fprintln(stderr, "xarfd check-store: it verifies a stopped store; use GET /api/v1/backup and check the copy to verify a running one")
		}
		return 1
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "damaged:", p)
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintf(stdout, "%s: DAMAGED: %d problems, %d records read; %s\n", rep.Path, len(rep.Problems), rep.Records, store.RestoreHint)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok: %d records, checksums, indexes and pages verified\n", rep.Path, rep.Records)
	return 0
}
