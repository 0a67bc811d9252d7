package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

// submitChannel resolves {name} for a submission: 403 when the token may
// not feed it (checked first, so a restricted token learns nothing about
// other channels), 404 when it is not configured.
// The channel comes with the ingester of its configuration.
func (s *Server) submitChannel(w http.ResponseWriter, r *http.Request) (*config.Channel, *ingest.Ingester, bool) {
	name := r.PathValue("name")
	if !tokenOf(r).mayFeed(name) {
		writeError(w, http.StatusForbidden, "token may not submit to this channel")
		return nil, nil, false
	}
	v := s.view.Load()
	ch, ok := v.channels[name]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown channel")
		return nil, nil, false
	}
	return ch, v.in, true
}

// readBody reads the body once into one buffer of its final size, at
// most limit bytes: 413 above it, 400 when empty. With a Content-Length
// (what clients send for a file) the buffer is allocated once at that
// size; without one (chunked), the body is read in chunks and joined
// once, never through a doubling buffer whose discarded copies cost
// several times the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		tooLarge(w, r)
		return nil, false
	}
	body, err := readAtMost(r.Body, r.ContentLength, limit)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || errors.Is(err, errBodyTooLarge):
		tooLarge(w, r)
		return nil, false
	case err != nil:
		requestLog(r).Info().Err(err).Msg("reading request body")
		writeError(w, http.StatusBadRequest, "could not read the request body")
		return nil, false
	case len(body) == 0:
		writeError(w, http.StatusBadRequest, "empty body")
		return nil, false
	}
	return body, true
}

var errBodyTooLarge = errors.New("body exceeds the size limit")

// readChunk is the unit a body of unknown length is read in.
const readChunk = 256 << 10

// readAtMost reads rd to its end into one slice; size is its announced
// length (-1 when unknown). More than limit bytes is errBodyTooLarge.
func readAtMost(rd io.Reader, size, limit int64) ([]byte, error) {
	if size >= 0 {
		// One extra byte tells a body longer than announced (net/http
		// refuses that already; this keeps the function honest alone).
		buf := make([]byte, size, size+1)
		if _, err := io.ReadFull(rd, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("body shorter than its Content-Length: %w", err)
			}
			return nil, err
		}
		if n, _ := rd.Read(buf[size : size+1]); n > 0 {
			return nil, errors.New("body longer than its Content-Length")
		}
		return buf, nil
	}
	var (
		chunks [][]byte
		total  int64
	)
	for {
		c := make([]byte, readChunk)
		n, err := io.ReadFull(rd, c)
		total += int64(n)
		if total > limit {
			return nil, errBodyTooLarge
		}
		chunks = append(chunks, c[:n])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}

// messageLimit is smtp.max_message_bytes: what SMTP would take.
func (s *Server) messageLimit() int64 {
	if n := s.view.Load().cfg.SMTP.MaxMessageBytes; n > 0 {
		return n
	}
	return 25 << 20
}

// reportLimit allows a XARF document carrying a maximal message as
// base64 evidence (4/3 of it) plus the rest of the document.
func (s *Server) reportLimit() int64 {
	return s.messageLimit()/3*4 + 1<<20
}

type submitted struct {
	ID          string `json:"id"`
	Quarantined bool   `json:"quarantined,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// POST /api/v1/channels/{name}/messages?rcpt=...&mail_from=...
//
// The message takes the same path as one received over SMTP
// (ingest.Accept), with an envelope whose peer is the HTTP client.
func (s *Server) submitMessage(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"rcpt", "mail_from"}, "rcpt")
	if err != nil {
		replyBadParam(w, err)
		return
	}
	ch, in, ok := s.submitChannel(w, r)
	if !ok { // the Content-Type was checked by the route (guard.go)
		return
	}
	rcpts := q["rcpt"]
	for _, a := range rcpts {
		if !plausibleAddress(a) {
			replyBadParam(w, &badParam{"rcpt", "want an email address"})
			return
		}
	}
	if max := s.view.Load().cfg.SMTP.MaxRecipients; max > 0 && len(rcpts) > max {
		replyBadParam(w, &badParam{"rcpt", "more recipients than smtp.max_recipients"})
		return
	}
	from := q.Get("mail_from")
	if from != "" && !plausibleAddress(from) {
		replyBadParam(w, &badParam{"mail_from", "want an email address (omit it for a null sender)"})
		return
	}
	body, ok := readBody(w, r, s.messageLimit())
	if !ok {
		return
	}
	env := store.Envelope{
		MailFrom:   from,
		ReceivedAt: time.Now().UTC(),
		Via:        "http",
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		env.PeerIP = ap.Addr().Unmap()
	}
	if t := tokenOf(r); t != nil {
		// The record says how the submitter was authenticated, as
		// SMTP AUTH does for mail.
		env.AuthUser = "token:" + t.name
	}
	res, err := in.Accept(env, []ingest.Delivery{{Channel: ch, Rcpts: rcpts}}, body)
	if err != nil {
		s.commitError(w, r, "ingesting message", err)
		return
	}
	out := submitted{ID: res[0].ID.String(), Quarantined: res[0].Quarantined, Reason: res[0].Reason}
	requestLog(r).Info().Str("channel", ch.Name).Str("id", out.ID).Bool("quarantined", out.Quarantined).Msg("message accepted")
	writeJSON(w, http.StatusAccepted, out)
}

// plausibleAddress is a sanity check, not RFC 5321 validation: one @,
// something on both sides, no whitespace or control characters.
func plausibleAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 320 {
		return false
	}
	for _, c := range a {
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// POST /api/v1/channels/{name}/reports: a XARF v4 document, validated
// by ingest.SubmitXARF.
func (s *Server) submitReport(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r, nil); err != nil {
		replyBadParam(w, err)
		return
	}
	ch, in, ok := s.submitChannel(w, r)
	if !ok { // the Content-Type was checked by the route (guard.go)
		return
	}
	body, ok := readBody(w, r, s.reportLimit())
	if !ok {
		return
	}
	id, err := in.SubmitXARF(ch, body)
	var inv *ingest.InvalidError
	if errors.As(err, &inv) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid XARF document", Reasons: inv.Reasons})
		return
	}
	if err != nil {
		s.commitError(w, r, "submitting report", err)
		return
	}
	requestLog(r).Info().Str("channel", ch.Name).Str("id", id.String()).Msg("report accepted")
	writeJSON(w, http.StatusAccepted, submitted{ID: id.String()})
}
