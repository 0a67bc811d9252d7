package redact

// An Aho-Corasick automaton over ASCII-folded bytes. One pass over a text finds
// every needle of every address, so the cost of a message is linear in its
// size whatever the number of addresses and forms.

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
}

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
	return m
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

// scan calls fn(id, start, end) for every (folded) occurrence of every needle.
func (m *acMachine) scan(text []byte, fn func(id int32, start, end int)) {
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
