package redact

import (
	"bytes"
	"cmp"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

type hit struct {
	id   int32
	s, e int
}

// asciiLower folds A-Z only, as the matchers do (bytes.ToLower would
// rewrite invalid UTF-8).
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// referenceScan is the obviously right matcher: every needle at every
// position, compared ASCII-folded.
func referenceScan(pats [][]byte, text []byte) []hit {
	var hits []hit
	ft := asciiLower(text)
	for id, p := range pats {
		lp := asciiLower(p)
		if len(lp) == 0 {
			continue
		}
		for s := 0; s+len(lp) <= len(ft); s++ {
			if bytes.Equal(ft[s:s+len(lp)], lp) {
				hits = append(hits, hit{int32(id), s, s + len(lp)})
			}
		}
	}
	return sortHits(hits)
}

func sortHits(h []hit) []hit {
	slices.SortFunc(h, func(a, b hit) int {
		return cmp.Or(cmp.Compare(a.s, b.s), cmp.Compare(a.e, b.e), cmp.Compare(a.id, b.id))
	})
	return h
}

// checkMatchers compares the hash matcher (when it accepts the needles)
// and the automaton with the reference.
func checkMatchers(t *testing.T, pats [][]byte, text []byte) {
	t.Helper()
	want := referenceScan(pats, text)
	folded := make([][]byte, len(pats))
	for i, p := range pats {
		folded[i] = asciiLower(p)
	}
	var hm hashMatcher
	if hm.build(folded) {
		var got []hit
		hm.scan(text, func(id int32, s, e int) { got = append(got, hit{id, s, e}) })
		if got = sortHits(got); !slices.Equal(got, want) {
			t.Fatalf("hash matcher, needles %q text %q:\ngot  %v\nwant %v", pats, text, got, want)
		}
	}
	var got []hit
	newACMachine(pats, nil).scan(text, func(id int32, s, e int) {
		if s < e {
			got = append(got, hit{id, s, e})
		}
	})
	if got = sortHits(got); !slices.Equal(got, want) {
		t.Fatalf("automaton, needles %q text %q:\ngot  %v\nwant %v", pats, text, got, want)
	}
}

// TestMatchersAgreeWithReference uses a small alphabet, so that needles
// overlap, share prefixes and anchors, and texts hold many occurrences.
func TestMatchersAgreeWithReference(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const alpha = "aAbB@.0\x00=%"
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.Intn(len(alpha))]
		}
		return b
	}
	usedHash := 0
	for round := 0; round < 2000; round++ {
		pats := make([][]byte, 1+rng.Intn(12))
		for i := range pats {
			pats[i] = randBytes(4 + rng.Intn(9))
		}
		if round%5 == 0 {
			pats[0] = randBytes(rng.Intn(4)) // too short for an anchor
		}
		var hm hashMatcher
		folded := make([][]byte, len(pats))
		for i, p := range pats {
			folded[i] = asciiLower(p)
		}
		if hm.build(folded) {
			usedHash++
		}
		text := randBytes(rng.Intn(400))
		if len(text) > 20 && round%3 == 0 {
			p := pats[rng.Intn(len(pats))]
			at := rng.Intn(len(text) - len(p) + 1)
			copy(text[at:], bytes.ToUpper(p))
		}
		checkMatchers(t, pats, text)
	}
	if usedHash < 500 {
		t.Fatalf("the hash matcher took only %d of the needle sets", usedHash)
	}
}

// TestHashMatcherRefusesCrowdedAnchors: needles that cannot be given
// anchors of their own are left to an automaton.
func TestHashMatcherRefusesCrowdedAnchors(t *testing.T) {
	var pats [][]byte
	for range maxChain + 1 {
		pats = append(pats, []byte("aaaa"))
	}
	var hm hashMatcher
	if hm.build(pats) {
		t.Fatal("five needles on one window accepted")
	}
	if hm.build([][]byte{[]byte("abc")}) {
		t.Fatal("a needle shorter than a window accepted")
	}
	if !hm.build([][]byte{[]byte("xxxxxxx1@trap"), []byte("xxxxxxx2@trap"), []byte("xxxxxxx3@trap"), []byte("xxxxxxx4@trap"), []byte("xxxxxxx5@trap")}) {
		t.Fatal("needles with a window of their own refused")
	}
}

func FuzzMatchers(f *testing.F) {
	f.Add([]byte("aaaa\x00bbbb\x00"), []byte("xxaaaabbbbaaaa"))
	f.Add([]byte("trap@x.example\x00dHJhcEB4\x0074726170"), []byte("to TRAP@X.example t=dHJhcEB4 h=74726170"))
	f.Fuzz(func(t *testing.T, needles, text []byte) {
		pats := bytes.Split(needles, []byte{0})
		if len(pats) > 64 || len(text) > 4096 {
			return
		}
		for _, p := range pats {
			if len(p) == 0 {
				return // empty needles are never built
			}
		}
		checkMatchers(t, pats, text)
	})
}

// TestMatcherPaths runs Apply through each way a message's needles are
// matched: merged with a small static set in one hash matcher, a large
// static set's automaton next to the message's hash matcher, and the
// fallback automaton when the hash matcher refuses a short needle.
func TestMatcherPaths(t *testing.T) {
	var many []string
	for i := range 40 {
		many = append(many, "configured"+string(rune('a'+i%26))+string(rune('a'+i/26))+"@trap.example")
	}
	cases := []struct {
		name   string
		p      Policy
		rcpt   string
		want   func(s *session) bool
		leaked []string
	}{
		{"merged", Policy{Domains: []string{"trap.example"}}, "jo.smith@rcpt.example",
			func(s *session) bool { return s.merged }, nil},
		{"static-automaton", Policy{Addresses: many}, "jo.smith@rcpt.example",
			func(s *session) bool { return !s.merged && s.dynHash }, many[:3]},
		{"fallback-automaton", Policy{LocalPart: true}, "jo@rcpt.example",
			func(s *session) bool { return !s.merged && !s.dynHash && s.dynAC != nil }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := mustNew(t, c.p)
			msg := []byte("To: " + c.rcpt + "\r\nCc: " + strings.Join(c.leaked, ", ") + "\r\n\r\nhi " + c.rcpt +
				" https://x.example/u?e=" + strings.ReplaceAll(c.rcpt, "@", "%40") + "&h=" + md5hex(c.rcpt) + "\r\n")
			s := newSession(r)
			s.addTarget(c.rcpt)
			if err := walk(msg, nil, 0, discoverer{s}); err != nil {
				t.Fatal(err)
			}
			s.build()
			ok := c.want(s)
			s.release()
			if !ok {
				t.Fatal("the message's needles were not matched the way this case is about")
			}
			out, _, err := r.Apply(msg, []string{c.rcpt})
			if err != nil {
				t.Fatal(err)
			}
			assertNoLeak(t, out, append([]string{c.rcpt}, c.leaked...))
		})
	}
}
