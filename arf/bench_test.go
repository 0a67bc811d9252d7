package arf

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkParse parses every message of the shared corpus once per op;
// µs/msg and allocs/msg are reported beside the per-op figures.
func BenchmarkParse(b *testing.B) {
	dir := sharedCorpus(b)
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	var msgs [][]byte
	var total int64
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, raw)
		total += int64(len(raw))
	}
	if len(msgs) == 0 {
		b.Fatal("empty corpus")
	}
	b.SetBytes(total)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		for _, m := range msgs {
			if _, err := Parse(m); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N*len(msgs)), "µs/msg")
}

func BenchmarkParseReceived(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range receivedCases {
			_, _ = ParseReceived(c.in)
		}
	}
}
