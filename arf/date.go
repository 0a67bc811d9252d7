package arf

import (
	"strconv"
	"strings"
	"time"
)

// zoneOffsets covers the obsolete RFC 822 names and the ones providers
// actually write (Yahoo's PST, MimeKit's EDT, "UTC").
var zoneOffsets = map[string]int{
	"UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "Z0": 0,
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
	"AKST": -9, "AKDT": -8, "HST": -10,
	"WET": 0, "WEST": 1, "BST": 1, "CET": 1, "CEST": 2, "MET": 1, "MEST": 2, "EET": 2, "EEST": 3,
	"MSK": 3, "JST": 9, "KST": 9, "HKT": 8, "SGT": 8, "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13,
}

var months = map[string]time.Month{
	"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
	"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}

// ParseDate reads the date forms found in feedback reports and Received
// headers: RFC 5322 (with or without weekday, comments, obsolete and
// common zone names, two-digit years), ISO 8601 / RFC 3339 (with 'T' or a
// space), date-only and zone-less forms, and ctime. dateOnly and
// zoneAssumed say what had to be assumed (midnight, UTC).
func ParseDate(s string) (t time.Time, dateOnly, zoneAssumed bool, ok bool) {
	s = stripComments(s)
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return time.Time{}, false, false, false
	}
	if s[0] >= '0' && s[0] <= '9' && len(s) >= 10 && s[4] == '-' {
		return parseISO(s)
	}
	if t, ok := parseRFC5322(s); ok {
		return t.t, t.dateOnly, t.zoneAssumed, true
	}
	for _, l := range []string{time.ANSIC, time.UnixDate, time.RubyDate} {
		if t, err := time.Parse(l, s); err == nil {
			return t, false, l == time.ANSIC, true
		}
	}
	return time.Time{}, false, false, false
}

func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func parseISO(s string) (time.Time, bool, bool, bool) {
	for _, l := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05 -0700",
		"2006-01-02 15:04:05 -0700", "2006-01-02T15:04:05-0700", "2006-01-02 15:04:05 MST"} {
		if t, err := time.Parse(l, s); err == nil {
			return t, false, false, true
		}
	}
	for _, l := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04",
		"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(l, s); err == nil {
			return t, false, true, true
		}
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, true, true, true
	}
	return time.Time{}, false, false, false
}

type parsedDate struct {
	t                     time.Time
	dateOnly, zoneAssumed bool
}

// parseRFC5322 is hand-written because time.Parse needs one layout per
// variant and providers produce dozens (single-digit days, missing seconds,
// "-0000 (EST)", "Thu, 30 Dec 10 10:37:16 -0800").
func parseRFC5322(s string) (parsedDate, bool) {
	f := strings.Fields(strings.ReplaceAll(s, ",", " "))
	if len(f) > 0 && len(f[0]) >= 3 && isAlpha(f[0]) {
		if _, isMonth := months[strings.ToLower(f[0][:3])]; !isMonth || len(f[0]) > 9 {
			f = f[1:] // weekday
		} else if len(f) >= 3 && isDigits(f[1]) && !isDigits(f[0]) && len(f[1]) <= 2 {
			f[0], f[1] = f[1], f[0] // "Apr 29 2015": month first
		}
	}
	if len(f) < 3 {
		return parsedDate{}, false
	}
	day, err := strconv.Atoi(f[0])
	if err != nil || day < 1 || day > 31 || len(f[1]) < 3 {
		return parsedDate{}, false
	}
	mon, ok := months[strings.ToLower(f[1][:3])]
	if !ok || !isAlpha(f[1]) {
		return parsedDate{}, false
	}
	if !isDigits(f[2]) || len(f[2]) > 4 {
		return parsedDate{}, false
	}
	year, _ := strconv.Atoi(f[2])
	switch len(f[2]) {
	case 1, 2:
		if year < 50 {
			year += 2000
		} else {
			year += 1900
		}
	case 3:
		year += 1900
	}
	var r parsedDate
	if len(f) == 3 {
		r.t = time.Date(year, mon, day, 0, 0, 0, 0, time.UTC)
		r.dateOnly, r.zoneAssumed = true, true
		return r, validDay(r.t, day)
	}
	hh, mm, ss, ok := parseClock(f[3])
	if !ok {
		return parsedDate{}, false
	}
	loc := time.UTC
	if len(f) >= 5 {
		off, ok := parseZone(f[4])
		if ok {
			loc = time.FixedZone("", off)
		} else {
			r.zoneAssumed = true
		}
	} else {
		r.zoneAssumed = true
	}
	r.t = time.Date(year, mon, day, hh, mm, ss, 0, loc)
	return r, validDay(r.t, day)
}

func validDay(t time.Time, day int) bool { return t.Day() == day }

func parseClock(s string) (h, m, sec int, ok bool) {
	p := strings.Split(s, ":")
	if len(p) < 2 || len(p) > 3 {
		return 0, 0, 0, false
	}
	var v [3]int
	for i, x := range p {
		if i == 2 {
			x, _, _ = strings.Cut(x, ".")
		}
		if !isDigits(x) || len(x) > 2 {
			return 0, 0, 0, false
		}
		v[i], _ = strconv.Atoi(x)
	}
	if v[0] > 23 || v[1] > 59 || v[2] > 60 {
		return 0, 0, 0, false
	}
	if v[2] == 60 {
		v[2] = 59 // leap second: keep the value parseable
	}
	return v[0], v[1], v[2], true
}

func parseZone(z string) (int, bool) {
	if len(z) == 5 && (z[0] == '+' || z[0] == '-') && isDigits(z[1:]) {
		h, _ := strconv.Atoi(z[1:3])
		m, _ := strconv.Atoi(z[3:])
		if h > 23 || m > 59 {
			return 0, false
		}
		off := h*3600 + m*60
		if z[0] == '-' {
			off = -off
		}
		return off, true
	}
	if h, ok := zoneOffsets[strings.ToUpper(z)]; ok {
		return h * 3600, true
	}
	return 0, false
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return s != ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
