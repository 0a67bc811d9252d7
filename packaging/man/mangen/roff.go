package main

import (
	"fmt"
	"strings"
)

// roff renders parsed Markdown blocks as man(7) source.
type roff struct{ b strings.Builder }

// escape makes text safe inside a roff line: backslashes and, in code,
// hyphens (so that flags copy as ASCII minus).
func escape(s string, code bool) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	if code {
		s = strings.ReplaceAll(s, "-", `\-`)
	}
	return s
}

// line writes one output line; a leading dot or apostrophe would be read as a
// request, so it is guarded.
func (r *roff) line(s string) {
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	r.b.WriteString(s)
	r.b.WriteByte('\n')
}

func (r *roff) req(s string) { r.b.WriteString(s + "\n") }

// text renders inline Markdown with fonts: code and bold in bold.
func (r *roff) text(s string) string {
	var b strings.Builder
	for _, sp := range inline(s) {
		t := escape(sp.text, sp.code)
		if sp.code || sp.bold {
			b.WriteString(`\fB` + t + `\fR`)
		} else {
			b.WriteString(t)
		}
	}
	return b.String()
}

// quoted is a macro argument.
func quoted(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\(dq`) + `"` }

func (r *roff) blocks(bs []block) {
	for _, b := range bs {
		switch b.kind {
		case bHeading:
			t := plain(b.text)
			if b.level <= 2 && !strings.Contains(b.text, "`") {
				t = strings.ToUpper(t)
			}
			if b.level <= 2 {
				r.req(".SH " + quoted(escape(t, false)))
			} else {
				r.req(".SS " + quoted(escape(t, false)))
			}
		case bPara:
			r.req(".PP")
			r.line(r.text(b.text))
		case bCode:
			r.req(".PP\n.RS 4\n.nf")
			for _, l := range b.lines {
				r.line(escape(l, true))
			}
			r.req(".fi\n.RE")
		case bBullet:
			r.req(`.IP \(bu 2`)
			r.line(r.text(b.text))
		case bNumbered:
			r.req(".IP " + quoted(b.term) + " 4")
			r.line(r.text(b.text))
		case bDefinition:
			r.req(".TP")
			r.line(r.text(b.term))
			r.line(r.text(b.text))
		case bTable:
			r.table(b.rows)
		}
	}
}

// table renders each row as a tagged paragraph: the first cell is the
// tag, the last the text, the cells between follow as "header: value".
// Terminal widths make real tables of long prose unreadable.
func (r *roff) table(rows [][]string) {
	if len(rows) < 2 {
		return
	}
	head := rows[0]
	for _, row := range rows[1:] {
		r.req(".TP")
		r.line(r.text(cell(row, 0)))
		if len(head) > 1 {
			r.line(r.text(cell(row, len(head)-1)))
		}
		for j := 1; j < len(head)-1; j++ {
			r.req(".br")
			r.line(fmt.Sprintf(`\fI%s\fR: %s`, escape(plain(head[j]), false), r.text(cell(row, j))))
		}
	}
}

func cell(row []string, i int) string {
	if i < len(row) {
		return row[i]
	}
	return ""
}
