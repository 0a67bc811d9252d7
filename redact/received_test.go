package redact

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// receivedForAll is what receivedFor must return: every match of the
// regexp over the whole value.
func receivedForAll(v string) []string {
	var want []string
	for _, m := range receivedForRe.FindAllStringSubmatch(v, -1) {
		want = append(want, m[1])
	}
	return want
}

func checkReceivedFor(t *testing.T, v string) {
	t.Helper()
	var got []string
	receivedFor(v, func(a string) { got = append(got, a) })
	if want := receivedForAll(v); !slices.Equal(got, want) {
		t.Fatalf("%q: got %q, want %q", v, got, want)
	}
}

func TestReceivedFor(t *testing.T) {
	for _, v := range []string{
		"from a by b with ESMTP for <Jo@Trap.example>; Tue",
		"from a by b FOR jo@x.example",
		"from before by b for for <a@b.example>",
		"by c forx@y.example for a@b.example (x) For\tc@d.example,",
		"by c_for a@b.example; by d-for c@d.example",
		"for",
		"",
	} {
		checkReceivedFor(t, v)
	}
	pieces := []string{"for", "FoR", "fore", "_", "-", "x", " ", "\t", "<", ">", ";", ",", "(", ")", "@", "a@b.example", "jo", ".example", "\u017f", "\u212a"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(14) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		checkReceivedFor(t, b.String())
	}
}

// FuzzReceivedFor: the prefiltered search finds what the regexp finds.
func FuzzReceivedFor(f *testing.F) {
	f.Add("from a by b with ESMTP\r\n\tfor <Deep@Trap.example>; Mon, 1 Jan 2024")
	f.Add("by c forx@y.example for a@b.example (x) For\tc@d.example,")
	f.Fuzz(func(t *testing.T, v string) { checkReceivedFor(t, v) })
}
