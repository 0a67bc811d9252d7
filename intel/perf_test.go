package intel

import (
	"bytes"
	"testing"
)

// BenchmarkExtractHostile measures bodies made to slow a scanner down
// (before the regexps lost their counted repetitions, "domains" took
// 47 s of wall time and "www" 3.6 s on the shared test machine).
func BenchmarkExtractHostile(b *testing.B) {
	x := testExtractor(b)
	head := "From: a@spam-domain.biz\r\nContent-Type: text/html\r\n\r\n"
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"www", bytes.Repeat([]byte("www."), 1<<20)},
		{"at", bytes.Repeat([]byte("a@"), 2<<20)},
		{"href", bytes.Repeat([]byte("<a href=\"http://x"), 200000)},
		{"tags", bytes.Repeat([]byte("<"), 4<<20)},
		{"domains", bytes.Repeat([]byte("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z."), 80000)},
		{"addrs", bytes.Repeat([]byte("x1@spam-domain-one.biz "), 150000)},
	} {
		raw := append([]byte(head), c.body...)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				x.Extract("trap", Input{Raw: raw})
			}
		})
	}
}
