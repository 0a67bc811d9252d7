package redact

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestHostsAtAnchored checks that finding the domains by their anchors
// reports exactly what the static automaton reports, in the same order:
// subdomains, case variants, overlapping and nested domains, escapes.
func TestHostsAtAnchored(t *testing.T) {
	sets := [][]string{
		{"trap-mailbox.example"},
		{"trap.example", "ap.example", "mx.trap.example"},
		{"aa.aa", "a-a.aa"},
		{"t1.example", "t1.example.net", "example.net"},
	}
	pieces := []string{"a", "A", ".", "-", "%2F", "=2E", "@", " ", "x.", "..", "\r\n", "mx.", "_"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, doms := range sets {
		r := mustNew(t, Policy{Domains: doms})
		if !r.static.anchored && !slices.Equal(doms, []string{"trap.example", "ap.example", "mx.trap.example"}) {
			t.Fatalf("%v: not anchored", doms)
		}
		all := append(slices.Clone(pieces), doms...)
		for _, d := range doms {
			all = append(all, strings.ToUpper(d), d[:len(d)/2], d[len(d)/2:])
		}
		for range 3000 {
			var b strings.Builder
			for range rng.IntN(12) {
				b.WriteString(all[rng.IntN(len(all))])
			}
			text := []byte(b.String())
			var got, want []string
			r.hostsAt(text, func(h []byte) { got = append(got, string(h)) })
			anch := r.static.anchored
			r.static.anchored = false
			r.hostsAt(text, func(h []byte) { want = append(want, string(h)) })
			r.static.anchored = anch
			if !slices.Equal(got, want) {
				t.Fatalf("%v in %q: anchored %q, automaton %q", doms, text, got, want)
			}
		}
	}
}

func TestDomainAnchor(t *testing.T) {
	for d, want := range map[string]byte{"trap-mailbox.example": '-', "trap.example": '.', "t1.example": '1'} {
		if a, ok := newDomainAnchor(d); !ok || a.c != want || d[a.at] != want {
			t.Errorf("%s: anchor %q at %d, want %q", d, a.c, a.at, want)
		}
	}
	if _, ok := newDomainAnchor("localhost"); ok {
		t.Error("localhost: an all-letter domain has no anchor")
	}
	r := mustNew(t, Policy{Domains: []string{"trap.example", "localhost"}})
	if r.static.anchored {
		t.Error("a set with an all-letter domain must use the automaton")
	}
}
