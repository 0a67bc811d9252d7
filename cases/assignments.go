package cases

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// lease is one row of the assignment log, packed: a million rows take
// about 40 MB, and a lookup touches a few cache lines.
type lease struct {
	ip         [16]byte
	start, end int64 // unix seconds; end 0 = still open
	portFirst  uint16
	portLast   uint16 // 0,0 = the whole address
	sub        uint32 // index into Assignments.subs
}

// Assignments is the loaded assignment log, sorted by address then start,
// so that the leases of one address are one run found by binary search.
type Assignments struct {
	leases []lease
	subs   []Subscriber
	// maxLen is the longest closed lease: a lookup scans back from the
	// last lease started before t no further than t-maxLen (an older
	// closed lease cannot cover t); open leases before that point are
	// found through open, the sorted indexes of every open lease.
	maxLen int64
	open   []int
	// runs indexes the first lease of each address: the binary search
	// walks 20-byte entries of distinct addresses instead of the leases.
	runs []ipRun
}

type ipRun struct {
	ip    [16]byte
	first int32
}

// Len is the number of leases.
func (a *Assignments) Len() int {
	if a == nil {
		return 0
	}
	return len(a.leases)
}

// row is one lease as written in the file (JSON Lines field names; CSV
// columns in the same order).
type row struct {
	IP           string          `json:"ip"`
	PortFirst    json.RawMessage `json:"port_first,omitempty"`
	PortLast     json.RawMessage `json:"port_last,omitempty"`
	Start        string          `json:"start"`
	End          string          `json:"end"`
	SubscriberID string          `json:"subscriber_id"`
	Email        string          `json:"email"`
	Name         string          `json:"name,omitempty"`
}

// assignmentColumns is the CSV layout (a header row starting with "ip"
// is skipped).
var assignmentColumns = []string{"ip", "port_first", "port_last", "start", "end", "subscriber_id", "email"}

// ParseAssignments reads the assignment log: JSON Lines when its first
// byte that is not white space is "{", else CSV
// "ip,port_first,port_last,start,end,subscriber_id,email[,name]". Times
// are RFC 3339 or Unix seconds; an empty end is a lease still open; empty
// ports mean the whole address. Malformed rows are counted with their line
// numbers and skipped.
func ParseAssignments(r io.Reader) (*Assignments, LoadStats, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var stats LoadStats
	b := &builder{subIdx: map[Subscriber]uint32{}}
	// A file's size tells about how many rows it has (a lease line is
	// some 60-150 bytes): sizing the slice once saves the copies and
	// clears of growing it, a third of the load time at a million rows.
	if f, ok := r.(interface{ Stat() (os.FileInfo, error) }); ok {
		if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
			n := min(fi.Size()/64, 1<<26)
			b.leases = make([]lease, 0, n)
			b.subIdx = make(map[Subscriber]uint32, n/4)
		}
	}
	first, err := peekNonSpace(br)
	if err != nil {
		return nil, stats, fmt.Errorf("reading assignments: %w", err)
	}
	if first == '{' {
		err = parseJSONL(br, b, &stats)
	} else {
		err = parseCSV(br, b, &stats)
	}
	if err != nil {
		return nil, stats, err
	}
	a := b.finish(&stats)
	return a, stats, nil
}

func peekNonSpace(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		p, err := br.Peek(n)
		if len(p) == n {
			if c := p[n-1]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				return c, nil
			}
			if n < br.Size() {
				continue
			}
			return 0, nil
		}
		if err == io.EOF {
			return 0, nil
		}
		return 0, err
	}
}

func parseJSONL(br *bufio.Reader, b *builder, stats *LoadStats) error {
	line := 0
	for {
		l, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer is no lease: skip it whole.
			line++
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			stats.bad(line, "line too long")
			if err == io.EOF {
				return nil
			}
			continue
		}
		if len(l) > 0 {
			line++
			if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
				var rw row
				if jerr := json.Unmarshal(t, &rw); jerr != nil {
					stats.bad(line, "not a JSON object: %v", jerr)
				} else {
					pf, e1 := jsonPort(rw.PortFirst)
					pl, e2 := jsonPort(rw.PortLast)
					if e := errors.Join(e1, e2); e != nil {
						stats.bad(line, "%v", e)
					} else {
						b.add(line, rw.IP, pf, pl, rw.Start, rw.End, rw.SubscriberID, rw.Email, rw.Name, stats)
					}
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading assignments: %w", err)
		}
	}
}

// jsonPort accepts a number or a string of one, so that exports writing
// every field as a string load too.
func jsonPort(m json.RawMessage) (string, error) {
	if len(m) == 0 || string(m) == "null" {
		return "", nil
	}
	var s string
	if m[0] == '"' {
		if err := json.Unmarshal(m, &s); err != nil {
			return "", fmt.Errorf("bad port %s", m)
		}
		return s, nil
	}
	return string(m), nil
}

func parseCSV(br *bufio.Reader, b *builder, stats *LoadStats) error {
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			stats.bad(pe.Line, "%v", pe.Err)
			continue
		}
		if err != nil {
			return fmt.Errorf("reading assignments: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if strings.EqualFold(strings.TrimSpace(rec[0]), "ip") {
			continue
		}
		if len(rec) < len(assignmentColumns) || len(rec) > len(assignmentColumns)+1 {
			stats.bad(line, "want %s[,name] (%d fields)", strings.Join(assignmentColumns, ","), len(rec))
			continue
		}
		name := ""
		if len(rec) > len(assignmentColumns) {
			name = rec[7]
		}
		b.add(line, rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], name, stats)
	}
}

// builder collects leases and interns subscribers: a subscriber has
// many leases over time, and one copy of their strings serves all.
type builder struct {
	leases []lease
	subs   []Subscriber
	subIdx map[Subscriber]uint32
}

func (b *builder) add(line int, ipS, pfS, plS, startS, endS, id, email, name string, stats *LoadStats) {
	ip, err := netip.ParseAddr(strings.TrimSpace(ipS))
	if err != nil {
		stats.bad(line, "ip %q is not an address", ipS)
		return
	}
	var l lease
	l.ip = ip.Unmap().As16()
	pf, pl := strings.TrimSpace(pfS), strings.TrimSpace(plS)
	if pf != "" || pl != "" {
		f, err1 := strconv.ParseUint(pf, 10, 16)
		t, err2 := strconv.ParseUint(pl, 10, 16)
		if err1 != nil || err2 != nil || f == 0 || t < f {
			stats.bad(line, "port range %q-%q: want two ports 1-65535, first <= last", pfS, plS)
			return
		}
		l.portFirst, l.portLast = uint16(f), uint16(t)
	}
	st, err := parseTime(startS)
	if err != nil || st.IsZero() {
		stats.bad(line, "start %q: want RFC 3339 or Unix seconds", startS)
		return
	}
	l.start = st.Unix()
	if strings.TrimSpace(endS) != "" {
		en, err := parseTime(endS)
		if err != nil {
			stats.bad(line, "end %q: want RFC 3339, Unix seconds or empty (still open)", endS)
			return
		}
		if !en.After(st) {
			stats.bad(line, "end %s is not after start %s", en.Format(time.RFC3339), st.Format(time.RFC3339))
			return
		}
		l.end = en.Unix()
	}
	sub := Subscriber{ID: strings.TrimSpace(id), Email: strings.TrimSpace(email), Name: strings.TrimSpace(name)}
	if sub.ID == "" {
		stats.bad(line, "empty subscriber_id")
		return
	}
	if sub.Email != "" && !validEmail(sub.Email) {
		stats.bad(line, "email %q is not an address", sub.Email)
		return
	}
	i, ok := b.subIdx[sub]
	if !ok {
		i = uint32(len(b.subs))
		b.subs = append(b.subs, sub)
		b.subIdx[sub] = i
	}
	l.sub = i
	b.leases = append(b.leases, l)
	stats.Rows++
}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 1<<40 {
			return time.Time{}, fmt.Errorf("out of range")
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func (b *builder) finish(stats *LoadStats) *Assignments {
	slices.SortFunc(b.leases, func(x, y lease) int {
		if c := bytes.Compare(x.ip[:], y.ip[:]); c != 0 {
			return c
		}
		if x.start != y.start {
			if x.start < y.start {
				return -1
			}
			return 1
		}
		return int(x.portFirst) - int(y.portFirst)
	})
	a := &Assignments{leases: slices.Clip(b.leases), subs: slices.Clip(b.subs)}
	// Overlaps: within one address, a lease that starts before the
	// latest end so far of a lease with another subscriber and a port
	// range that meets it. Exports from RADIUS often carry a session
	// whose Stop was lost; it is reported, and lookups inside it list
	// both candidates.
	for i := 0; i < len(a.leases); {
		j := i
		for j < len(a.leases) && a.leases[j].ip == a.leases[i].ip {
			j++
		}
		a.runs = append(a.runs, ipRun{ip: a.leases[i].ip, first: int32(i)})
		// An open lease ends where the next lease of its address and
		// port block starts: DHCP and RADIUS hand an address to one
		// holder at a time, and an export that logs session starts
		// keeps the start of a session whose Stop came later or never.
		for k := i; k < j; k++ {
			if a.leases[k].end != 0 {
				continue
			}
			for n := k + 1; n < j; n++ {
				if a.leases[n].start > a.leases[k].start && portsMeet(&a.leases[k], &a.leases[n]) {
					a.leases[k].end = a.leases[n].start
					break
				}
			}
		}
		for k := i; k < j; k++ {
			l := &a.leases[k]
			if l.end != 0 {
				a.maxLen = max(a.maxLen, l.end-l.start)
			} else {
				a.open = append(a.open, k)
			}
			for m := k - 1; m >= i; m-- {
				p := &a.leases[m]
				if (p.end == 0 || p.end > l.start) && p.sub != l.sub && portsMeet(p, l) {
					stats.Overlaps++
					break
				}
			}
		}
		i = j
	}
	return a
}

func portsMeet(a, b *lease) bool {
	if a.portLast == 0 || b.portLast == 0 {
		return true
	}
	return a.portFirst <= b.portLast && b.portFirst <= a.portLast
}

func (l *lease) covers(t int64) bool { return l.start <= t && (l.end == 0 || t < l.end) }

func (l *lease) hasPort(p int) bool {
	return l.portLast != 0 && int(l.portFirst) <= p && p <= int(l.portLast)
}

// Lookup finds who held ip (and port, 0 = unknown) at t: nil when
// nobody; Ambiguous with the candidates when the log cannot tell.
func (a *Assignments) Lookup(ip netip.Addr, port int, t time.Time) *Match {
	if a == nil || len(a.leases) == 0 {
		return nil
	}
	key := ip.Unmap().As16()
	ts := t.Unix()
	// The run of ip is [lo, hi); hi is the first lease of ip starting
	// after t.
	r, ok := slices.BinarySearchFunc(a.runs, key, func(x ipRun, k [16]byte) int { return bytes.Compare(x.ip[:], k[:]) })
	if !ok {
		return nil
	}
	lo, end := int(a.runs[r].first), len(a.leases)
	if r+1 < len(a.runs) {
		end = int(a.runs[r+1].first)
	}
	hi := lo + sortSearch(end-lo, func(i int) bool { return a.leases[lo+i].start > ts })
	var cand []uint32
	var portHit []uint32
	take := func(l *lease) {
		if !l.covers(ts) {
			return
		}
		cand = appendUnique(cand, l.sub)
		if port > 0 && l.hasPort(port) {
			portHit = appendUnique(portHit, l.sub)
		}
	}
	k := hi - 1
	for ; k >= lo; k-- {
		l := &a.leases[k]
		if ts-l.start > a.maxLen {
			break
		}
		take(l)
	}
	// Open leases that started before the scanned window.
	for o, _ := slices.BinarySearch(a.open, lo); o < len(a.open) && a.open[o] <= k; o++ {
		take(&a.leases[a.open[o]])
	}
	if len(portHit) > 0 {
		cand = portHit
	}
	switch len(cand) {
	case 0:
		return nil
	case 1:
		return &Match{Subscriber: a.subs[cand[0]], Source: SourceAssignments}
	}
	m := &Match{Source: SourceAssignments, Ambiguous: true}
	for _, c := range cand {
		m.Candidates = append(m.Candidates, a.subs[c])
	}
	slices.SortFunc(m.Candidates, func(x, y Subscriber) int { return strings.Compare(x.ID, y.ID) })
	if port == 0 {
		m.Note = fmt.Sprintf("%s was shared by %d subscribers at %s and the report has no source port", ip, len(cand), t.UTC().Format(time.RFC3339))
	} else {
		m.Note = fmt.Sprintf("%s port %d was assigned to %d subscribers at %s (overlapping leases)", ip, port, len(cand), t.UTC().Format(time.RFC3339))
	}
	return m
}

func appendUnique(s []uint32, v uint32) []uint32 {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// sortSearch is sort.Search without the import's closure indirection
// cost mattering: the smallest i in [0,n) with f(i), or n.
func sortSearch(n int, f func(int) bool) int {
	i, j := 0, n
	for i < j {
		h := int(uint(i+j) >> 1)
		if !f(h) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}
