package redact

import (
	"math/rand"
	"slices"
	"testing"
)

// TestDenseScanMatchesSparse checks that the dense table finds exactly what
// the sparse automaton finds, in the same order, on random needles and texts
// over a small alphabet (so that needles overlap and share prefixes).
func TestDenseScanMatchesSparse(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const alpha = "aAbB@.0\x00=%"
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.Intn(len(alpha))]
		}
		return b
	}
	type hit struct {
		id   int32
		s, e int
	}
	for round := 0; round < 300; round++ {
		pats := make([][]byte, 1+rng.Intn(12))
		for i := range pats {
			pats[i] = randBytes(rng.Intn(7)) // empty needles included
		}
		m := newACMachine(pats, nil)
		if m.sparse != nil {
			t.Fatal("small machine has no dense table")
		}
		sparse := newSparseMachine(pats)
		text := randBytes(rng.Intn(400))
		var dense, want []hit
		m.scan(text, func(id int32, s, e int) { dense = append(dense, hit{id, s, e}) })
		sparse.scan(text, func(id int32, s, e int) { want = append(want, hit{id, s, e}) })
		if !slices.Equal(dense, want) {
			t.Fatalf("needles %q text %q:\ndense  %v\nsparse %v", pats, text, dense, want)
		}
	}
}
