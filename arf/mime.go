package arf

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/xarfd/xarfd/internal/header"
)

// Limits that keep the work linear and bounded on hostile input.
const (
	// MaxInputSize is the most Parse reads; the rest is dropped with a warning.
	MaxInputSize = 64 << 20
	// maxDepth bounds MIME nesting (multiparts and message/rfc822 inside
	// each other); deeper structure is treated as opaque bytes.
	maxDepth = 12
	// maxHeaderFields bounds one header block.
	maxHeaderFields = 10000
	// maxParts bounds the parts of one multipart.
	maxParts = 1000
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// normalize strips a UTF-8 BOM and turns CRLF and bare CR into LF, so that
// everything after it deals with one line ending. It copies only when there
// is a CR to remove.
func normalize(raw []byte, w *warnings) []byte {
	if bytes.HasPrefix(raw, utf8BOM) {
		raw = raw[len(utf8BOM):]
		w.add(WarnBOM, "input starts with a UTF-8 byte-order mark")
	}
	return toLF(raw, w)
}

func toLF(raw []byte, w *warnings) []byte {
	i := bytes.IndexByte(raw, '\r')
	if i < 0 {
		return raw
	}
	out := make([]byte, 0, len(raw))
	var crlf, cr int
	for i >= 0 {
		out = append(out, raw[:i]...)
		out = append(out, '\n')
		if i+1 < len(raw) && raw[i+1] == '\n' {
			crlf++
			raw = raw[i+2:]
		} else {
			cr++
			raw = raw[i+1:]
		}
		i = bytes.IndexByte(raw, '\r')
	}
	out = append(out, raw...)
	if w != nil {
		lf := bytes.Count(out, []byte{'\n'}) - crlf - cr
		switch {
		case cr > 0 && crlf == 0 && lf == 0:
			w.add(WarnBareCR, "bare CR line endings (%d lines)", cr)
		case cr > 0:
			w.add(WarnBareCR, "%d bare CR line endings mixed with others", cr)
		case crlf > 0 && lf > 0:
			w.add(WarnMixedLineEndings, "%d CRLF and %d LF line endings mixed", crlf, lf)
		}
	}
	return out
}

// toCRLF converts LF data to the wire form.
func toCRLF(b []byte) []byte {
	n := bytes.Count(b, []byte{'\n'})
	out := make([]byte, 0, len(b)+n)
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return append(out, b...)
		}
		out = append(out, b[:i]...)
		out = append(out, '\r', '\n')
		b = b[i+1:]
	}
}

// nextLine returns the line starting at data[pos:] without its LF and the
// position after it.
func nextLine(data []byte, pos int) (line []byte, next int) {
	i := bytes.IndexByte(data[pos:], '\n')
	if i < 0 {
		return data[pos:], len(data)
	}
	return data[pos : pos+i], pos + i + 1
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// validFieldName accepts RFC 5322 ftext (printable ASCII except colon and
// space).
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// parseHeader reads a header block from LF data. It is lenient: an mbox
// "From " line is skipped, a line of only white space ends the header as an
// empty line does (header.Lenient), a line that is not a field ends the
// header (the rest is body, with a warning), and there need not be a blank
// line.
func parseHeader(data []byte, w *warnings) (Header, []byte) {
	var h Header
	full := false
	for pos := 0; pos < len(data); {
		f, next, ok := header.Lenient.Next(data, pos)
		if ok {
			pos = next
			if len(h) >= maxHeaderFields {
				if !full {
					w.add(WarnTruncated, "more than %d header fields; the rest ignored", maxHeaderFields)
					full = true
				}
				continue
			}
			h = append(h, Field{Name: string(f.Name), Value: header.Unfold(bytes.TrimSpace(f.Value))})
			continue
		}
		line, next := nextLine(data, pos)
		switch {
		case len(bytes.TrimRight(line, " \t")) == 0:
			return h, data[next:]
		case isWSP(line[0]):
			w.add(WarnHeaderSyntax, "continuation line with no field before it")
			pos = next
			continue
		case pos == 0 && bytes.HasPrefix(line, []byte("From ")):
			pos = next // mbox separator
			continue
		}
		if len(h) > 0 {
			w.add(WarnHeaderSyntax, "header ends without a blank line at %q", truncateForText(line))
		}
		return h, data[pos:]
	}
	return h, nil
}

func truncateForText(b []byte) string {
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}

// entity is one MIME entity of LF-normalised data.
type entity struct {
	header    Header
	body      []byte // raw body, not transfer-decoded
	mediaType string // lowercased; text/plain when absent or broken
	params    map[string]string
	parts     []*entity // for multipart/*
	closed    bool      // closing boundary seen (multipart only)
	partsFull bool
	parent    *entity
}

func (e *entity) cte() string {
	v, _ := e.header.Get("Content-Transfer-Encoding")
	return strings.ToLower(strings.TrimSpace(v))
}

func parseEntity(data []byte, depth int, w *warnings) *entity {
	h, body := parseHeader(data, w)
	e := &entity{header: h, body: body}
	e.mediaType, e.params = contentType(h, w)
	if strings.HasPrefix(e.mediaType, "multipart/") {
		if depth >= maxDepth {
			w.add(WarnTruncated, "MIME nesting deeper than %d; inner parts not parsed", maxDepth)
			return e
		}
		e.splitMultipart(depth, w)
	}
	return e
}

// contentType parses Content-Type leniently: when mime.ParseMediaType gives
// up (duplicate or badly quoted parameters are common), parameters are
// picked out by hand.
func contentType(h Header, w *warnings) (string, map[string]string) {
	v, ok := h.Get("Content-Type")
	if !ok || strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return mt, params
	}
	mt, params = lenientMediaType(v)
	if mt == "" || !strings.Contains(mt, "/") {
		w.add(WarnContentType, "unparseable Content-Type %q", truncateForText([]byte(v)))
		return "text/plain", params
	}
	return mt, params
}

func lenientMediaType(v string) (string, map[string]string) {
	params := map[string]string{}
	parts := strings.Split(v, ";")
	mt := strings.ToLower(strings.TrimSpace(parts[0]))
	if i := strings.IndexAny(mt, " \t"); i >= 0 {
		mt = mt[:i]
	}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' {
			if j := strings.IndexByte(val[1:], '"'); j >= 0 {
				val = val[1 : j+1]
			} else {
				val = val[1:]
			}
		}
		if _, dup := params[k]; !dup && k != "" {
			params[k] = val
		}
	}
	return mt, params
}

// splitMultipart cuts the body at boundary lines. It tolerates a missing
// boundary parameter (the first "--" line is taken), boundary lines with
// trailing white space and a missing closing boundary (the last part runs to
// the end of the data).
func (e *entity) splitMultipart(depth int, w *warnings) {
	b := e.params["boundary"]
	if b == "" {
		b = guessBoundary(e.body)
		if b == "" {
			w.add(WarnMissingBoundary, "%s without boundary parameter and no boundary line found", e.mediaType)
			return
		}
		w.add(WarnMissingBoundary, "%s without boundary parameter; using %q from the body", e.mediaType, b)
	}
	delim := []byte("--" + b)
	data := e.body
	pos, partStart := 0, -1
	for pos < len(data) {
		line, next := nextLine(data, pos)
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t")
			closing := bytes.Equal(rest, []byte("--"))
			if closing || len(rest) == 0 {
				if partStart >= 0 {
					e.addPart(data, partStart, pos, true, depth, w)
				}
				if closing {
					e.closed = true
					return
				}
				partStart = next
			}
		}
		pos = next
	}
	if partStart >= 0 {
		e.addPart(data, partStart, len(data), false, depth, w)
	}
	w.add(WarnNoClosingBoundary, "%s never closes (no --%s-- line)", e.mediaType, truncateForText([]byte(b)))
}

func (e *entity) addPart(data []byte, start, end int, beforeBoundary bool, depth int, w *warnings) {
	if len(e.parts) >= maxParts {
		if !e.partsFull {
			w.add(WarnTruncated, "more than %d parts; the rest ignored", maxParts)
			e.partsFull = true
		}
		return
	}
	// The line break before a boundary belongs to the boundary.
	if beforeBoundary && end > start && data[end-1] == '\n' {
		end--
	}
	if end < start {
		end = start
	}
	p := parseEntity(data[start:end:end], depth+1, w)
	p.parent = e
	e.parts = append(e.parts, p)
}

func guessBoundary(body []byte) string {
	pos := 0
	for pos < len(body) {
		line, next := nextLine(body, pos)
		if len(line) > 2 && line[0] == '-' && line[1] == '-' {
			b := strings.TrimRight(string(line[2:]), " \t")
			return strings.TrimSuffix(b, "--")
		}
		pos = next
	}
	return ""
}

// decodedBody undoes the Content-Transfer-Encoding. A broken or unknown
// encoding keeps the raw bytes and warns, so one bad part never loses the
// rest of the report.
func (e *entity) decodedBody(what string, w *warnings) []byte {
	switch cte := e.cte(); cte {
	case "", "7bit", "8bit", "binary":
		return e.body
	case "base64":
		out, err := decodeBase64(e.body)
		if err != nil {
			w.add(WarnTransferEncoding, "%s: bad base64 (%v); kept undecoded", what, err)
			return e.body
		}
		return toLF(out, nil)
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(e.body)))
		if err != nil {
			w.add(WarnTransferEncoding, "%s: bad quoted-printable (%v); kept undecoded", what, err)
			return e.body
		}
		return toLF(out, nil)
	default:
		w.add(WarnTransferEncoding, "%s: unknown Content-Transfer-Encoding %q; kept undecoded", what, truncateForText([]byte(cte)))
		return e.body
	}
}

func decodeBase64(b []byte) ([]byte, error) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
			clean = append(clean, c)
		case c == '=', c == ' ', c == '\t', c == '\n':
		default:
			return nil, errBadBase64
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1] // a stray last character carries no whole byte
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

type arfError string

func (e arfError) Error() string { return string(e) }

const errBadBase64 = arfError("character outside the base64 alphabet")
