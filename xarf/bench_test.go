package xarf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xarfd/xarfd/arf"
)

// BenchmarkFromARF converts every corpus report once per iteration, from
// the parsed report (what ingest hands over); ns/op and allocs are per
// corpus pass, and the custom metric per report.
func BenchmarkFromARF(b *testing.B) {
	needDir(b, corpusDir(), "shared ARF corpus")
	files, _ := filepath.Glob(filepath.Join(corpusDir(), "*.eml"))
	type item struct {
		rep *arf.Report
		in  Input
	}
	var items []item
	var size int64
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := arf.Parse(raw)
		if err != nil || rep.Class == arf.ClassNotReport {
			continue
		}
		if _, err := FromARF(rep, corpusInput(raw)); err != nil {
			continue
		}
		items = append(items, item{rep, corpusInput(raw)})
		size += int64(len(raw))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, it := range items {
			if _, err := FromARF(it.rep, it.in); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(items)), "µs/report")
}

// BenchmarkFromTrap converts the trap fixtures (arf.Parse of the header
// included).
func BenchmarkFromTrap(b *testing.B) {
	var ins []Input
	var size int64
	for name, c := range trapCases {
		if c.wantErr != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(fixtureDir, name+".eml"))
		if err != nil {
			b.Fatal(err)
		}
		ins = append(ins, c.input(raw))
		size += int64(len(raw))
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range ins {
			if _, err := FromTrap(in); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(ins)), "µs/report")
}

// BenchmarkFromTrapNoOrigin is a trap hit that yields no report (it only
// passed our own relays): the path of every quarantined hit.
func BenchmarkFromTrapNoOrigin(b *testing.B) {
	var ins []Input
	for name, c := range trapCases {
		if !errors.Is(c.wantErr, ErrNoOrigin) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(fixtureDir, name+".eml"))
		if err != nil {
			b.Fatal(err)
		}
		ins = append(ins, c.input(raw))
	}
	if len(ins) == 0 {
		b.Fatal("no fixture without origin")
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range ins {
			if _, err := FromTrap(in); !errors.Is(err, ErrNoOrigin) {
				b.Fatalf("FromTrap = %v, want ErrNoOrigin", err)
			}
		}
	}
}

// BenchmarkValidator is the schema check of one produced report.
func BenchmarkValidator(b *testing.B) {
	v := schemaValidator(b)
	raw, err := os.ReadFile(filepath.Join(fixtureDir, "01-trap-direct-ipv4.eml"))
	if err != nil {
		b.Fatal(err)
	}
	doc, err := FromTrap(trapCases["01-trap-direct-ipv4"].input(raw))
	if err != nil {
		b.Fatal(err)
	}
	js := marshal(b, doc)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Check(js); err != nil {
			b.Fatal(err)
		}
	}
}
