package main

import (
	"strings"
)

// The Markdown this generator reads is the subset docs/ uses: ATX
// headings, paragraphs, fenced and indented code blocks, pipe tables,
// "-" and "1." lists, definition lists ("term" then ": definition"),
// and inline code, bold, and links. Anything else passes as text.

type blockKind int

const (
	bHeading blockKind = iota
	bPara
	bCode
	bTable
	bBullet
	bNumbered
	bDefinition
)

type block struct {
	kind  blockKind
	level int        // heading level
	text  string     // heading, paragraph, list item, definition body: inline Markdown
	term  string     // definition term; a numbered item's "1."
	lines []string   // code lines
	rows  [][]string // table rows, header first (the --- row removed)
}

// parseBlocks splits Markdown into blocks.
func parseBlocks(md string) []block {
	lines := strings.Split(strings.ReplaceAll(md, "\r\n", "\n"), "\n")
	var out []block
	for i := 0; i < len(lines); {
		l := lines[i]
		trim := strings.TrimSpace(l)
		switch {
		case trim == "":
			i++
		case strings.HasPrefix(trim, "```"):
			var code []string
			for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				code = append(code, lines[i])
			}
			i++
			out = append(out, block{kind: bCode, lines: code})
		case strings.HasPrefix(l, "    "):
			var code []string
			for ; i < len(lines) && (strings.HasPrefix(lines[i], "    ") || strings.TrimSpace(lines[i]) == ""); i++ {
				code = append(code, strings.TrimPrefix(lines[i], "    "))
			}
			for len(code) > 0 && strings.TrimSpace(code[len(code)-1]) == "" {
				code = code[:len(code)-1]
			}
			out = append(out, block{kind: bCode, lines: code})
		case strings.HasPrefix(trim, "#"):
			n := len(trim) - len(strings.TrimLeft(trim, "#"))
			out = append(out, block{kind: bHeading, level: n, text: strings.TrimSpace(trim[n:])})
			i++
		case strings.HasPrefix(trim, "|"):
			var rows [][]string
			for ; i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i]), "|"); i++ {
				cells := splitRow(strings.TrimSpace(lines[i]))
				if isRule(cells) {
					continue
				}
				rows = append(rows, cells)
			}
			out = append(out, block{kind: bTable, rows: rows})
		case strings.HasPrefix(trim, "- "), numbered(trim) > 0:
			kind, text, term := bBullet, trim[2:], ""
			if n := numbered(trim); n > 0 {
				kind, text, term = bNumbered, trim[n:], trim[:n-1]
			}
			// Continuation lines are indented.
			for i++; i < len(lines) && strings.HasPrefix(lines[i], "  ") && strings.TrimSpace(lines[i]) != ""; i++ {
				text += " " + strings.TrimSpace(lines[i])
			}
			out = append(out, block{kind: kind, text: text, term: term})
		case i+1 < len(lines) && strings.HasPrefix(lines[i+1], ": "):
			term := trim
			text := strings.TrimPrefix(lines[i+1], ": ")
			for i += 2; i < len(lines) && strings.HasPrefix(lines[i], "  ") && strings.TrimSpace(lines[i]) != ""; i++ {
				text += " " + strings.TrimSpace(lines[i])
			}
			out = append(out, block{kind: bDefinition, term: term, text: text})
		default:
			text := trim
			for i++; i < len(lines); i++ {
				t := strings.TrimSpace(lines[i])
				if t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, "```") || strings.HasPrefix(t, "|") ||
					strings.HasPrefix(t, "- ") || numbered(t) > 0 {
					break
				}
				text += " " + t
			}
			out = append(out, block{kind: bPara, text: text})
		}
	}
	return out
}

// numbered returns the length of a "12. " prefix, or 0.
func numbered(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i+1 >= len(s) || s[i] != '.' || s[i+1] != ' ' {
		return 0
	}
	return i + 2
}

// splitRow splits "| a | b \| c |" into cells; "\|" is a literal pipe.
func splitRow(s string) []string {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "|"), "|")
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '|':
			cur.WriteByte('|')
			i++
		case s[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

func isRule(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return true
}

// span is a piece of inline text: code, bold, or plain.
type span struct {
	code, bold bool
	text       string
}

// inline splits inline Markdown into spans; links keep their text (and
// an absolute URL in angle brackets).
func inline(s string) []span {
	var out []span
	for s != "" {
		i := strings.IndexAny(s, "`*[")
		if i < 0 {
			out = append(out, span{text: s})
			break
		}
		if i > 0 {
			out = append(out, span{text: s[:i]})
			s = s[i:]
		}
		switch {
		case s[0] == '`':
			end := strings.IndexByte(s[1:], '`')
			if end < 0 {
				out = append(out, span{text: s})
				return out
			}
			out = append(out, span{code: true, text: s[1 : 1+end]})
			s = s[2+end:]
		case strings.HasPrefix(s, "**"):
			end := strings.Index(s[2:], "**")
			if end < 0 {
				out = append(out, span{text: s[:2]})
				s = s[2:]
				continue
			}
			for _, sp := range inline(s[2 : 2+end]) {
				sp.bold = true
				out = append(out, sp)
			}
			s = s[4+end:]
		case s[0] == '[':
			close := strings.Index(s, "](")
			end := strings.IndexByte(s, ')')
			if close < 0 || end < close {
				out = append(out, span{text: "["})
				s = s[1:]
				continue
			}
			out = append(out, inline(s[1:close])...)
			if u := s[close+2 : end]; strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
				out = append(out, span{text: " <" + u + ">"})
			}
			s = s[end+1:]
		default:
			out = append(out, span{text: s[:1]})
			s = s[1:]
		}
	}
	return out
}

// plain renders inline Markdown as terminal text (for xarfd help).
func plain(s string) string {
	var b strings.Builder
	for _, sp := range inline(s) {
		b.WriteString(sp.text)
	}
	return b.String()
}
