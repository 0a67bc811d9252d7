package arf

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestDumpCorpus(t *testing.T) {
	if os.Getenv("ARF_DUMP") == "" {
		t.Skip("set ARF_DUMP=1")
	}
	dir := sharedCorpus(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		r, err := Parse(raw)
		if err != nil {
			fmt.Println(filepath.Base(f), err)
			continue
		}
		o := "-"
		if r.Origin != nil {
			o = fmt.Sprintf("%s %v %s", r.Origin.IP, r.Origin.Inferred, r.Origin.Method)
		}
		fmt.Printf("%-48s %-14s origin=%s\n   reason=%s\n   rcpts=%v\n", filepath.Base(f), r.Class, o, r.Reason, r.RecipientAddresses())
		for _, w := range r.Warnings {
			fmt.Println("   W", w)
		}
	}
}
