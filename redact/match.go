package redact

// The per-message needles (envelope recipients, addresses the message
// names, addresses and host names found at configured domains) are few,
// tens per address, but they change with every message, so what matters
// is what a matcher costs to build, not only to run. An Aho-Corasick table
// costs states x alphabet to clear and fill; this matcher costs a few table
// inserts per needle.
//
// Each needle is filed under a run of 4-byte windows of it, chosen so that
// few needles share one: a scan looks at every stride-th 4-byte window of
// the text (stride up to 4, as the shortest needle allows), tests a
// 4096-bit filter and, on a hit, compares only the needles filed under
// that window. Anchors that cannot be kept apart (needles shorter
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
	// maxStride bounds how many windows a scan skips.
	maxStride = 4
)

type hashMatcher struct {
	pats [][]byte // folded
	// stride: the scan looks at every stride-th window only, so each
	// needle is filed under stride consecutive windows of it, one of
	// which every occurrence puts at a looked-at position.
	stride int
	// entries: a needle, the offset of its window in it, the next entry
	// with the same window (-1 at the end)
	entNeedle, entOff, entNext []int32
	filter                     [filterBits / 64]uint64
	// open addressing, window value -> first entry; slot empty when head < 0
	keys []uint32
	head []int32
	mask uint32
}

func window(b []byte) uint32 {
	return uint32(foldTable[b[0]])<<24 | uint32(foldTable[b[1]])<<16 | uint32(foldTable[b[2]])<<8 | uint32(foldTable[b[3]])
}

func filterHash(w uint32) uint32 { return (w * 0x9E3779B1) >> 20 } // 12 bits

// slot returns the table slot of window value w: where it is, or the empty
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
	for e := m.head[m.slot(w)]; e >= 0; e = m.entNext[e] {
		n++
	}
	return n
}

// build files pats (already folded) and reports whether every needle could
// be given windows; if not, the caller uses an automaton. The matcher's
// memory is reused from build to build.
func (m *hashMatcher) build(pats [][]byte) bool {
	if len(pats) > maxHashNeedles || len(pats) == 0 {
		return false
	}
	m.pats = pats
	minLen := len(pats[0])
	for _, p := range pats {
		minLen = min(minLen, len(p))
	}
	if minLen < anchorLen {
		return false
	}
	m.stride = min(maxStride, minLen-anchorLen+1)
	size := 16
	for size < 4*m.stride*len(pats) {
		size *= 2
	}
	m.mask = uint32(size - 1)
	m.keys = emptyCap(m.keys, size)[:size]
	m.head = emptyCap(m.head, size)[:size]
	for i := range m.head {
		m.head[i] = -1
	}
	m.entNeedle = m.entNeedle[:0]
	m.entOff = m.entOff[:0]
	m.entNext = m.entNext[:0]
	clear(m.filter[:])
	for id, p := range pats {
		// The first run of stride windows that no needle uses yet; else
		// the least crowded.
		best, bestMax := 0, maxChain+1
		for off := 0; off+anchorLen+m.stride-1 <= len(p) && bestMax > 0; off++ {
			worst := 0
			for j := range m.stride {
				worst = max(worst, m.chainLen(window(p[off+j:])))
			}
			if worst < bestMax {
				best, bestMax = off, worst
			}
		}
		if bestMax >= maxChain {
			return false
		}
		for j := range m.stride {
			w := window(p[best+j:])
			i := m.slot(w)
			m.keys[i] = w
			m.entNeedle = append(m.entNeedle, int32(id))
			m.entOff = append(m.entOff, int32(best+j))
			m.entNext = append(m.entNext, m.head[i])
			m.head[i] = int32(len(m.entNeedle) - 1)
			h := filterHash(w)
			m.filter[h>>6] |= 1 << (h & 63)
		}
	}
	return true
}

// scan calls fn(id, start, end) for every (folded) occurrence of every
// needle, each once.
func (m *hashMatcher) scan(text []byte, fn func(id int32, start, end int)) {
	f := &m.filter
	for i := anchorLen - 1; i < len(text); i += m.stride {
		w := window(text[i+1-anchorLen:])
		h := filterHash(w)
		if f[(h>>6)&63]&(1<<(h&63)) == 0 {
			continue
		}
		for e := m.head[m.slot(w)]; e >= 0; e = m.entNext[e] {
			id := m.entNeedle[e]
			p := m.pats[id]
			st := i + 1 - anchorLen - int(m.entOff[e])
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
