package cases

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// LineError is one malformed row of a subscriber file: it is skipped and
// the rest is loaded.
type LineError struct {
	Line int
	Msg  string
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// maxLineErrors bounds what a load keeps of its errors: a file that is
// wrong everywhere says so in its first lines and its count.
const maxLineErrors = 100

// LoadStats says what a load of a file found.
type LoadStats struct {
	Rows int `json:"rows"`
	// Bad counts malformed rows; Errors holds the first of them.
	Bad    int         `json:"bad"`
	Errors []LineError `json:"errors,omitempty"`
	// Overlaps counts leases of one address (and port range) whose times
	// overlap with another subscriber's; lookups in them are ambiguous.
	Overlaps int `json:"overlaps,omitempty"`
}

func (s *LoadStats) bad(line int, format string, args ...any) {
	s.Bad++
	if len(s.Errors) < maxLineErrors {
		s.Errors = append(s.Errors, LineError{Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

// Static is the network → subscriber table of subscribers.static_file.
type Static struct {
	byPrefix map[netip.Prefix]Subscriber
	// bits lists the prefix lengths present, longest first, so that a
	// lookup tries only those.
	bits []int
}

// ParseStatic reads CSV "network,subscriber_id,email,name" (a header row
// naming "network" first is skipped; # starts a comment line).
func ParseStatic(r io.Reader) (*Static, LoadStats, error) {
	st := &Static{byPrefix: map[netip.Prefix]Subscriber{}}
	var stats LoadStats
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	seen := map[int]bool{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			stats.bad(pe.Line, "%v", pe.Err)
			continue
		}
		if err != nil {
			return nil, stats, fmt.Errorf("reading subscribers: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "network") {
			continue
		}
		if len(rec) < 2 || len(rec) > 4 {
			stats.bad(line, "want network,subscriber_id,email,name (%d fields)", len(rec))
			continue
		}
		p, err := parsePrefix(rec[0])
		if err != nil {
			stats.bad(line, "%v", err)
			continue
		}
		sub := Subscriber{ID: strings.TrimSpace(rec[1])}
		if sub.ID == "" {
			stats.bad(line, "empty subscriber_id")
			continue
		}
		if len(rec) > 2 {
			sub.Email = strings.TrimSpace(rec[2])
			if sub.Email != "" && !validEmail(sub.Email) {
				stats.bad(line, "%q is not an email address", sub.Email)
				continue
			}
		}
		if len(rec) > 3 {
			sub.Name = strings.TrimSpace(rec[3])
		}
		if _, dup := st.byPrefix[p]; dup {
			stats.bad(line, "network %s is listed twice; the first row stays", p)
			continue
		}
		st.byPrefix[p] = sub
		stats.Rows++
		if !seen[p.Bits()] {
			seen[p.Bits()] = true
			st.bits = append(st.bits, p.Bits())
		}
	}
	// Longest first.
	for i := 1; i < len(st.bits); i++ {
		for j := i; j > 0 && st.bits[j] > st.bits[j-1]; j-- {
			st.bits[j], st.bits[j-1] = st.bits[j-1], st.bits[j]
		}
	}
	return st, stats, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network", s)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q mixes IPv4-mapped and IPv6 space", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or network", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Lookup returns the subscriber of the longest network holding ip.
func (s *Static) Lookup(ip netip.Addr) (Subscriber, bool) {
	if s == nil {
		return Subscriber{}, false
	}
	ip = ip.Unmap()
	for _, b := range s.bits {
		if b > ip.BitLen() {
			continue
		}
		p, err := ip.Prefix(b)
		if err != nil {
			continue
		}
		if sub, ok := s.byPrefix[p]; ok {
			return sub, true
		}
	}
	return Subscriber{}, false
}

// Len is the number of networks.
func (s *Static) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byPrefix)
}

func validEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t\r\n<>,;\"")
}
