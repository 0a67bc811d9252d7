package redact

// The per-message needles (envelope recipients, addresses the message
// names, addresses and host names found at configured domains) are few,
// tens per address, but they change with every message, so what matters
// is what a matcher costs to build, not only to run. An Aho-Corasick table
// costs states x alphabet to clear and fill; this matcher costs a few table
// inserts per needle.
//
// Each needle is filed under one 4-byte window of it, its anchor, chosen so
// that few needles share one: a scan slides a 4-byte window over the text,
// tests a 4096-bit filter and, on a hit, compares only the needles filed
// under that window. Anchors that cannot be kept apart (needles shorter
// than a window, too many needles, more than maxChain needles under one
// window) make the caller use an automaton instead, so that no message can
// make a scan compare many needles at every position.

const (
	anchorLen  = 4
	filterBits = 4096
	// maxChain bounds the needles compared at one text position.
	maxChain = 4
	// maxHashNeedles: past this many needles an automaton is built
	// instead (its build cost is then spread over many needles anyway).
	maxHashNeedles = 1024
)

type hashMatcher struct {
	pats   [][]byte // folded
	anchor []int32  // offset of each needle's anchor in it
	next   []int32  // next needle with the same anchor, -1 at the end
	filter [filterBits / 64]uint64
	// open addressing, anchor value -> first needle; slot empty when head < 0
	keys []uint32
	head []int32
	mask uint32
}

func window(b []byte) uint32 {
	return uint32(foldTable[b[0]])<<24 | uint32(foldTable[b[1]])<<16 | uint32(foldTable[b[2]])<<8 | uint32(foldTable[b[3]])
}

func filterHash(w uint32) uint32 { return (w * 0x9E3779B1) >> 20 } // 12 bits

// slot returns the table slot of anchor value w: where it is, or the empty
// slot where it would go.
func (m *hashMatcher) slot(w uint32) uint32 {
	i := (w * 0x85EBCA6B) >> 7 & m.mask
	for m.head[i] >= 0 && m.keys[i] != w {
		i = (i + 1) & m.mask
	}
	return i
}

func (m *hashMatcher) chainLen(w uint32) int {
	n := 0
	for id := m.head[m.slot(w)]; id >= 0; id = m.next[id] {
		n++
	}
	return n
}

// build files pats (already folded) and reports whether every needle could
// be given an anchor; if not, the caller uses an automaton. The matcher's
// memory is reused from build to build.
func (m *hashMatcher) build(pats [][]byte) bool {
	if len(pats) > maxHashNeedles {
		return false
	}
	m.pats = pats
	size := 16
	for size < 4*len(pats) {
		size *= 2
	}
	m.mask = uint32(size - 1)
	m.keys = emptyCap(m.keys, size)[:size]
	m.head = emptyCap(m.head, size)[:size]
	for i := range m.head {
		m.head[i] = -1
	}
	m.anchor = emptyCap(m.anchor, len(pats))
	m.next = emptyCap(m.next, len(pats))
	clear(m.filter[:])
	for id, p := range pats {
		if len(p) < anchorLen {
			return false
		}
		// The first window that no needle uses yet; else the least used.
		best, bestLen := 0, maxChain+1
		for off := 0; off+anchorLen <= len(p) && bestLen > 0; off++ {
			if n := m.chainLen(window(p[off:])); n < bestLen {
				best, bestLen = off, n
			}
		}
		if bestLen >= maxChain {
			return false
		}
		w := window(p[best:])
		i := m.slot(w)
		m.keys[i] = w
		m.anchor = append(m.anchor, int32(best))
		m.next = append(m.next, m.head[i])
		m.head[i] = int32(id)
		h := filterHash(w)
		m.filter[h>>6] |= 1 << (h & 63)
	}
	return true
}

// scan calls fn(id, start, end) for every (folded) occurrence of every
// needle, in the order of their anchors' ends.
func (m *hashMatcher) scan(text []byte, fn func(id int32, start, end int)) {
	if len(text) < anchorLen {
		return
	}
	w := uint32(foldTable[text[0]])<<16 | uint32(foldTable[text[1]])<<8 | uint32(foldTable[text[2]])
	for i := anchorLen - 1; i < len(text); i++ {
		w = w<<8 | uint32(foldTable[text[i]])
		h := filterHash(w)
		if m.filter[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		for id := m.head[m.slot(w)]; id >= 0; id = m.next[id] {
			p := m.pats[id]
			st := i + 1 - anchorLen - int(m.anchor[id])
			if st >= 0 && st+len(p) <= len(text) && foldedPrefix(text[st:], p) {
				fn(id, st, st+len(p))
			}
		}
	}
}

// foldedPrefix reports whether t starts with p when t is ASCII-folded (p
// is folded already).
func foldedPrefix(t, p []byte) bool {
	t = t[:len(p)]
	for i, c := range p {
		if foldTable[t[i]] != c {
			return false
		}
	}
	return true
}
