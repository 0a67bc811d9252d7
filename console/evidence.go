package console

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"

	"github.com/xarfd/xarfd/redact"
	"github.com/xarfd/xarfd/store"
)

// Limits of the evidence view.
const (
	// maxEvidenceView is how much of a message (or of one part) the page
	// shows; the rest is in the download.
	maxEvidenceView = 1 << 20
	maxParts        = 100
	maxPartDepth    = 8
)

// EvidencePartCSP is the policy of an HTML part shown in the sandboxed
// frame: a sandbox of its own (no scripts, no forms, no same origin even
// when opened directly), no fetches of any kind (no tracking pixels,
// fonts or styles from outside), inline styles only so that it looks
// like mail.
const EvidencePartCSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'self'; base-uri 'none'"

// placeholders finds what redaction put in place of recipient data
// (package redact): the token address, its keyed pseudonyms, the host
// name that replaces a redacted domain and its pseudonyms, in any case.
// Encoded forms show the domain part (redacted%40redacted.invalid).
var placeholders = regexp.MustCompile(`(?i)(?:r-[0-9a-f]{12}|redacted)@redacted\.invalid|(?:r-[0-9a-f]{12}\.)?redacted\.invalid|` + digestAlternatives())

// digestAlternatives are the hex digests of the token address: redaction
// replaces an md5, sha1 or sha256 of an address by the same digest of
// the replacement.
func digestAlternatives() string {
	a := []byte(redact.TokenAddress)
	m, s1, s2 := md5.Sum(a), sha1.Sum(a), sha256.Sum256(a)
	return hex.EncodeToString(m[:]) + "|" + hex.EncodeToString(s1[:]) + "|" + hex.EncodeToString(s2[:])
}

// seg is a piece of shown text; Mark: a redaction placeholder.
type seg struct {
	Text string
	Mark bool
}

// highlight cuts s into plain and placeholder pieces. Invalid UTF-8 is
// shown as U+FFFD (the download has the bytes).
func highlight(s string) []seg {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var out []seg
	last := 0
	for _, m := range placeholders.FindAllStringIndex(s, -1) {
		if m[0] > last {
			out = append(out, seg{Text: s[last:m[0]]})
		}
		out = append(out, seg{Text: s[m[0]:m[1]], Mark: true})
		last = m[1]
	}
	if last < len(s) {
		out = append(out, seg{Text: s[last:]})
	}
	return out
}

// mimePart is one leaf of the message's MIME tree.
type mimePart struct {
	N        int
	Path     string
	Type     string
	Charset  string
	Encoding string
	Size     int
	HTML     bool
	Text     bool
	body     []byte // decoded, as the part's charset
}

// walkParts lists the message's leaf parts, decoding their transfer
// encoding; bounded in depth and count. A part it cannot read is listed
// with what could be read of it.
func walkParts(raw []byte) []mimePart {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	body, _ := io.ReadAll(msg.Body)
	var out []mimePart
	walk(textproto.MIMEHeader(msg.Header), body, "1", 0, &out)
	return out
}

func walk(h textproto.MIMEHeader, body []byte, path string, depth int, out *[]mimePart) {
	if len(*out) >= maxParts {
		return
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt == "" {
		mt, params = "text/plain", map[string]string{}
	}
	switch {
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < maxPartDepth:
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for i := 1; ; i++ {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(io.LimitReader(p, int64(len(body))))
			walk(p.Header, b, path+"."+strconv.Itoa(i), depth+1, out)
		}
	case (mt == "message/rfc822" || mt == "message/global") && depth < maxPartDepth:
		m, err := mail.ReadMessage(bytes.NewReader(decodeTransfer(h.Get("Content-Transfer-Encoding"), body)))
		if err != nil {
			break
		}
		b, _ := io.ReadAll(m.Body)
		walk(textproto.MIMEHeader(m.Header), b, path+".1", depth+1, out)
		return
	}
	if strings.HasPrefix(mt, "multipart/") || mt == "message/rfc822" || mt == "message/global" {
		return
	}
	dec := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	*out = append(*out, mimePart{N: len(*out) + 1, Path: path, Type: mt, Charset: strings.ToLower(params["charset"]),
		Encoding: strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))), Size: len(dec),
		HTML: mt == "text/html", Text: strings.HasPrefix(mt, "text/") || strings.HasPrefix(mt, "message/"), body: dec})
}

func decodeTransfer(enc string, b []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, b)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, _ := base64.StdEncoding.Decode(out, bytes.TrimRight(clean, "="))
		if n == 0 {
			n, _ = base64.RawStdEncoding.Decode(out, bytes.TrimRight(clean, "="))
		}
		return out[:n]
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
		return out
	}
	return b
}

// utf8Text returns a part's text as UTF-8 (its declared charset when
// go-message knows it).
func (p *mimePart) utf8Text() string {
	if p.Charset != "" && p.Charset != "utf-8" && p.Charset != "us-ascii" {
		if r, err := charset.Reader(p.Charset, bytes.NewReader(p.body)); err == nil {
			if b, err := io.ReadAll(io.LimitReader(r, 4*maxEvidenceView)); err == nil {
				return string(b)
			}
		}
	}
	return string(p.body)
}

type evidenceData struct {
	ID       string
	Channel  string
	Header   []seg
	Body     []seg
	Cut      bool
	Size     int
	Redacted int
	Parts    []mimePart
	// Part is the part shown decoded (0: the whole message as stored).
	Part *mimePart
	// PartText is the decoded part; Render shows an HTML part in the
	// sandboxed frame.
	PartText []seg
	Render   bool
}

// evidenceRaw returns the stored message of report id, answering 404
// itself: only a report's evidence is shown (a quarantined message,
// which has no report, never is).
func (c *Console) evidenceRaw0(w http.ResponseWriter, r *http.Request) (store.ID, *store.Report, []byte, bool) {
	id, ok := c.pathID(w, r, "report")
	if !ok {
		return id, nil, nil, false
	}
	rep, err := c.o.Store.GetReportMeta(id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "No such report", "There is no report with this id: it may have expired with its channel's retention.")
		return id, nil, nil, false
	}
	if err != nil {
		c.internal(w, r, "reading report", err)
		return id, nil, nil, false
	}
	raw, err := c.o.Store.Raw(id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "No evidence", "No message is stored for this report: it was submitted as a XARF document, or its channel does not store (uses without store).")
		return id, nil, nil, false
	}
	if err != nil {
		c.internal(w, r, "reading evidence", err)
		return id, nil, nil, false
	}
	return id, rep, raw, true
}

// GET /reports/{id}/evidence[?part=N[&render=1]]
func (c *Console) evidence(w http.ResponseWriter, r *http.Request) {
	id, rep, raw, ok := c.evidenceRaw0(w, r)
	if !ok {
		return
	}
	d := &evidenceData{ID: id.String(), Channel: rep.Channel, Size: len(raw), Parts: walkParts(raw)}
	if n, err := strconv.Atoi(r.URL.Query().Get("part")); err == nil {
		if n < 1 || n > len(d.Parts) {
			c.fail(w, r, http.StatusNotFound, "No such part", "The message has no part with this number. Go back to the evidence.")
			return
		}
		p := &d.Parts[n-1]
		d.Part = p
		d.Render = p.HTML && r.URL.Query().Get("render") == "1"
		text := p.utf8Text()
		if len(text) > maxEvidenceView {
			text, d.Cut = text[:maxEvidenceView], true
		}
		d.PartText = highlight(text)
	} else {
		shown := raw
		if len(shown) > maxEvidenceView {
			shown, d.Cut = shown[:maxEvidenceView], true
		}
		head, body := splitHeader(shown)
		d.Header, d.Body = highlight(string(head)), highlight(string(body))
	}
	for _, s := range append(append(d.Header, d.Body...), d.PartText...) {
		if s.Mark {
			d.Redacted++
		}
	}
	c.render(w, r, http.StatusOK, "evidence", &page{Title: "Evidence of " + d.ID, Nav: "reports", Data: d})
}

// splitHeader cuts a message at its first empty line.
func splitHeader(b []byte) (head, body []byte) {
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(b, sep); i >= 0 {
			if j := bytes.Index(b, []byte("\n\n")); sep[0] == '\r' && j >= 0 && j < i {
				continue
			}
			return b[:i+len(sep)], b[i+len(sep):]
		}
	}
	return b, nil
}

// GET /reports/{id}/evidence.eml: the stored message as a download.
func (c *Console) evidenceRaw(w http.ResponseWriter, r *http.Request) {
	id, _, raw, ok := c.evidenceRaw0(w, r)
	if !ok {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "message/rfc822")
	h.Set("Content-Disposition", `attachment; filename="`+id.String()+`.eml"`)
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	w.Write(raw)
}

// GET /reports/{id}/evidence/part/{n}: an HTML part, decoded to UTF-8,
// for the sandboxed frame of the evidence page. Its policy forbids
// scripts, forms and every fetch even when it is opened directly.
func (c *Console) evidencePart(w http.ResponseWriter, r *http.Request) {
	_, _, raw, ok := c.evidenceRaw0(w, r)
	if !ok {
		return
	}
	parts := walkParts(raw)
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 1 || n > len(parts) || !parts[n-1].HTML {
		http.Error(w, "no such HTML part", http.StatusNotFound)
		return
	}
	text := parts[n-1].utf8Text()
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	h := w.Header()
	h.Set("Content-Security-Policy", EvidencePartCSP)
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	io.WriteString(w, text)
}
