package redact

// An Aho-Corasick automaton over ASCII-folded bytes. One pass over a text finds
// every needle of every address, so the cost of a message is linear in its
// size whatever the number of addresses and forms.
//
// A message is scanned several times over (raw and rendered, while
// redacting and while verifying), so the scan loop is what Apply spends
// most of its time in. It runs on a dense transition table: one load per
// byte, fail links folded in. Bytes that occur in no needle share one
// column, so the table is states x (distinct needle bytes + 1). Past
// maxDense entries (many addresses found at a configured domain) the
// sparse automaton is scanned instead; both find the same occurrences.

type acEdge struct {
	c    byte
	next int32
}

type acMachine struct {
	root  [256]int32 // dense transitions out of the root: most steps start here
	edges [][]acEdge // sparse transitions of the other states (few children each)
	fail  []int32
	out   [][]int32 // needle ids ending at this state, fail chain merged in
	lens  []int     // needle lengths

	// Dense form, nil when over budget. An entry is the next state's row
	// offset (state*nclass), bitwise negated when that state has outputs.
	delta  []int32
	class  [256]int32 // byte (folded) -> column
	nclass int32
}

// maxDense bounds the dense table (4 bytes an entry).
const maxDense = 1 << 20

var foldTable = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if i >= 'A' && i <= 'Z' {
			t[i] = byte(i) + 'a' - 'A'
		}
	}
	return t
}()

func newACMachine(pats [][]byte) *acMachine {
	m := &acMachine{edges: [][]acEdge{nil}, fail: []int32{0}, out: [][]int32{nil}}
	for i := range m.root {
		m.root[i] = -1
	}
	m.lens = make([]int, len(pats))
	for id, p := range pats {
		m.lens[id] = len(p)
		if len(p) == 0 {
			continue
		}
		s := int32(0)
		for _, c := range p {
			c = foldTable[c]
			nx := m.child(s, c)
			if nx < 0 {
				nx = int32(len(m.edges))
				m.edges = append(m.edges, nil)
				m.fail = append(m.fail, 0)
				m.out = append(m.out, nil)
				if s == 0 {
					m.root[c] = nx
				} else {
					m.edges[s] = append(m.edges[s], acEdge{c, nx})
				}
			}
			s = nx
		}
		m.out[s] = append(m.out[s], int32(id))
	}
	// Breadth-first fail links; merging outputs along the way keeps the
	// scan free of dictionary-link chasing.
	queue := make([]int32, 0, len(m.edges))
	for c := 0; c < 256; c++ {
		if n := m.root[c]; n >= 0 {
			m.fail[n] = 0
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, e := range m.edges[s] {
			f := m.fail[s]
			for {
				if n := m.child(f, e.c); n >= 0 {
					m.fail[e.next] = n
					break
				}
				if f == 0 {
					m.fail[e.next] = 0
					break
				}
				f = m.fail[f]
			}
			if fo := m.out[m.fail[e.next]]; len(fo) > 0 {
				m.out[e.next] = append(m.out[e.next], fo...)
			}
			queue = append(queue, e.next)
		}
	}
	m.buildDense()
	return m
}

// buildDense fills the dense table. States are numbered in insertion
// order, so it visits them breadth first (a fail link is shallower than
// its state, so its row is complete when the state's row copies from it).
func (m *acMachine) buildDense() {
	var used [256]bool
	for s := range m.edges {
		for _, e := range m.edges[s] {
			used[e.c] = true
		}
	}
	for c, n := range m.root {
		if n >= 0 {
			used[c] = true
		}
	}
	nc := int32(1) // column 0: bytes in no needle, always back to the root
	var col [256]int32
	for c := range used {
		if used[c] {
			col[c] = nc
			nc++
		}
	}
	states := len(m.edges)
	if states*int(nc) > maxDense {
		return
	}
	for c := range m.class {
		m.class[c] = col[foldTable[c]]
	}
	m.nclass = nc
	d := make([]int32, states*int(nc))
	enc := func(n int32) int32 {
		if len(m.out[n]) > 0 {
			return ^(n * nc)
		}
		return n * nc
	}
	for c := range used {
		if n := m.root[c]; used[c] && n >= 0 {
			d[col[c]] = enc(n)
		}
	}
	order := make([]int32, 0, states)
	for c := 0; c < 256; c++ {
		if n := m.root[c]; n >= 0 {
			order = append(order, n)
		}
	}
	for i := 0; i < len(order); i++ {
		s := order[i]
		row := d[s*nc : (s+1)*nc]
		copy(row, d[m.fail[s]*nc:(m.fail[s]+1)*nc])
		for _, e := range m.edges[s] {
			row[col[e.c]] = enc(e.next)
			order = append(order, e.next)
		}
	}
	m.delta = d
}

func (m *acMachine) child(s int32, c byte) int32 {
	if s == 0 {
		return m.root[c]
	}
	for _, e := range m.edges[s] {
		if e.c == c {
			return e.next
		}
	}
	return -1
}

// scan calls fn(id, start, end) for every (folded) occurrence of every
// needle, in the order of their ends and, at one end, of the out lists.
func (m *acMachine) scan(text []byte, fn func(id int32, start, end int)) {
	if m.delta == nil {
		m.scanSparse(text, fn)
		return
	}
	d, cl, nc := m.delta, &m.class, m.nclass
	off := int32(0)
	for i, c := range text {
		off = d[off+cl[c]]
		if off < 0 {
			off = ^off
			for _, id := range m.out[off/nc] {
				fn(id, i+1-m.lens[id], i+1)
			}
		}
	}
}

// scanSparse is scan on the sparse automaton.
func (m *acMachine) scanSparse(text []byte, fn func(id int32, start, end int)) {
	s := int32(0)
	for i, c := range text {
		c = foldTable[c]
		for {
			if n := m.child(s, c); n >= 0 {
				s = n
				break
			}
			if s == 0 {
				break
			}
			s = m.fail[s]
		}
		for _, id := range m.out[s] {
			fn(id, i+1-m.lens[id], i+1)
		}
	}
}
