package redact

// An Aho-Corasick automaton over ASCII-folded bytes. One pass over a text finds
// every needle of every address, so the cost of a message is linear in its
// size whatever the number of addresses and forms.
//
// A message is scanned several times over (raw and rendered, while
// redacting and while verifying), and a new automaton is built for every
// message, so both building and scanning are on the hot path. The automaton
// is a dense transition table built in place: one load per scanned byte,
// fail links folded in, one allocation. Bytes that occur in no needle share
// one column, so the table is states x (distinct needle bytes + 1). Past
// maxDense entries (many addresses found at a configured domain) a sparse
// automaton is built instead; both report the same occurrences in the same
// order.

type acMachine struct {
	lens []int // needle lengths

	// Dense form. An entry is the next state's row offset (state*nclass),
	// bitwise negated when an occurrence ends in that state.
	delta  []int32
	class  [256]int32 // byte -> column (folded)
	nclass int32
	// Needles ending in state s are ownIDs[ownAt[s]:ownAt[s+1]], in id
	// order; dict[s] is the nearest state on s's fail chain that has some
	// (0: none). An occurrence of every one of them ends where s is reached.
	ownIDs, ownAt, dict []int32

	sparse *acSparse // instead of the dense form, when over budget
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

// newACMachine builds the automaton of pats. The dense table is built in
// buf's memory when it is large enough (buf is reused from message to
// message; the machine owns it until it is dropped).
func newACMachine(pats [][]byte, buf []int32) *acMachine {
	var used [256]bool
	bound := 1 // states: at most one per needle byte, and the root
	for _, p := range pats {
		bound += len(p)
		for _, c := range p {
			used[foldTable[c]] = true
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
	if bound*int(nc) > maxDense {
		return newSparseMachine(pats)
	}
	if cap(buf) < bound*int(nc) {
		buf = make([]int32, bound*int(nc))
	}
	return newDenseMachine(pats, &col, nc, buf[:bound*int(nc)])
}

func newDenseMachine(pats [][]byte, col *[256]int32, nc int32, d []int32) *acMachine {
	m := &acMachine{nclass: nc, lens: make([]int, len(pats))}
	for c := range m.class {
		m.class[c] = col[foldTable[c]]
	}
	// The trie, in d: an entry is a child's state number, 0 for none (no
	// edge leads back to the root). Each state also records its parent's
	// list of children (first, sib) and the column of its edge.
	clear(d[:nc])
	first := []int32{0}
	sib := []int32{0}
	edgeCol := []int32{0}
	ends := make([]int32, len(pats)) // state each needle ends in; 0: empty needle
	states := int32(1)
	for id, p := range pats {
		m.lens[id] = len(p)
		s := int32(0)
		for _, c := range p {
			e := s*nc + col[foldTable[c]]
			if d[e] == 0 {
				t := states
				states++
				clear(d[t*nc : (t+1)*nc])
				d[e] = t
				first = append(first, 0)
				sib = append(sib, first[s])
				first[s] = t
				edgeCol = append(edgeCol, col[foldTable[c]])
			}
			s = d[e]
		}
		ends[id] = s
	}
	d = d[:states*nc]
	m.ownAt = make([]int32, states+1)
	for _, s := range ends {
		if s != 0 {
			m.ownAt[s+1]++
		}
	}
	for s := int32(0); s < states; s++ {
		m.ownAt[s+1] += m.ownAt[s]
	}
	m.ownIDs = make([]int32, m.ownAt[states])
	next := append([]int32(nil), m.ownAt[:states]...)
	for id, s := range ends {
		if s != 0 {
			m.ownIDs[next[s]] = int32(id)
			next[s]++
		}
	}
	// Breadth first, each row is completed in place: a missing child's
	// entry is the fail state's entry (shallower, so already complete),
	// a child's is its encoded offset.
	fail := make([]int32, states)
	m.dict = make([]int32, states)
	hasOut := func(s int32) bool { return m.ownAt[s+1] > m.ownAt[s] || m.dict[s] != 0 }
	queue := make([]int32, 1, states)
	for qi := 0; qi < len(queue); qi++ {
		s := queue[qi]
		row := d[s*nc : (s+1)*nc]
		var frow []int32
		if s != 0 {
			frow = d[fail[s]*nc : (fail[s]+1)*nc]
			copy(row, frow) // the root row keeps its zeros
		}
		for t := first[s]; t != 0; t = sib[t] {
			c := edgeCol[t]
			if s != 0 {
				f := frow[c]
				if f < 0 {
					f = ^f
				}
				fail[t] = f / nc
			}
			if f := fail[t]; m.ownAt[f+1] > m.ownAt[f] {
				m.dict[t] = f
			} else {
				m.dict[t] = m.dict[f]
			}
			row[c] = t * nc
			if hasOut(t) {
				row[c] = ^row[c]
			}
			queue = append(queue, t)
		}
	}
	m.delta = d
	return m
}

// scan calls fn(id, start, end) for every (folded) occurrence of every
// needle, in the order of their ends and, at one end, longest needle state
// first along the fail chain.
func (m *acMachine) scan(text []byte, fn func(id int32, start, end int)) {
	if m.sparse != nil {
		m.sparse.scan(text, m.lens, fn)
		return
	}
	d, cl, nc := m.delta, &m.class, m.nclass
	off := int32(0)
	for i, c := range text {
		off = d[off+cl[c]]
		if off < 0 {
			off = ^off
			for s := off / nc; s != 0; s = m.dict[s] {
				for _, id := range m.ownIDs[m.ownAt[s]:m.ownAt[s+1]] {
					fn(id, i+1-m.lens[id], i+1)
				}
			}
		}
	}
}

// acSparse is the automaton with sparse transitions, for needle sets whose
// dense table would be too large.
type acEdge struct {
	c    byte
	next int32
}

type acSparse struct {
	root  [256]int32 // dense transitions out of the root: most steps start here
	edges [][]acEdge // sparse transitions of the other states (few children each)
	fail  []int32
	out   [][]int32 // needle ids ending at this state, fail chain merged in
}

func newSparseMachine(pats [][]byte) *acMachine {
	m := &acSparse{edges: [][]acEdge{nil}, fail: []int32{0}, out: [][]int32{nil}}
	for i := range m.root {
		m.root[i] = -1
	}
	lens := make([]int, len(pats))
	for id, p := range pats {
		lens[id] = len(p)
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
	return &acMachine{lens: lens, sparse: m}
}

func (m *acSparse) child(s int32, c byte) int32 {
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

func (m *acSparse) scan(text []byte, lens []int, fn func(id int32, start, end int)) {
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
			fn(id, i+1-lens[id], i+1)
		}
	}
}
