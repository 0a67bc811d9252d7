package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/xarfd/xarfd/store"
)

// badParam is a 400 naming the parameter.
type badParam struct{ name, want string }

func (e *badParam) Error() string { return "bad parameter " + e.name + ": " + e.want }

// query checks that r's query names only allowed parameters, each once
// except those in multi.
func query(r *http.Request, allowed []string, multi ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &badParam{"query", "malformed query string"}
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			return nil, &badParam{safeName(k), "unknown parameter"}
		}
		if len(q[k]) > 1 && !slices.Contains(multi, k) {
			return nil, &badParam{k, "given more than once"}
		}
	}
	return q, nil
}

// safeName keeps a client-supplied parameter name printable and short
// for the error reply.
func safeName(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	return strconv.Quote(k)
}

func replyBadParam(w http.ResponseWriter, err error) {
	var bp *badParam
	if errors.As(err, &bp) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": bp.Error(), "parameter": bp.name})
		return
	}
	writeError(w, http.StatusBadRequest, "bad request")
}

func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, &badParam{name, "want an RFC 3339 time such as 2026-01-02T15:04:05Z"}
	}
	return t, nil
}

func parseLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return DefaultPageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > store.MaxLimit {
		return 0, &badParam{"limit", fmt.Sprintf("want an integer from 1 to %d", store.MaxLimit)}
	}
	return n, nil
}

func parseCursor(q url.Values) (store.ID, error) {
	v := q.Get("cursor")
	if v == "" {
		return store.ID{}, nil
	}
	id, err := uuid.Parse(v)
	if err != nil || id == (store.ID{}) {
		return store.ID{}, &badParam{"cursor", "not a cursor returned by this API"}
	}
	return id, nil
}

func cursorText(id store.ID) string {
	if id == (store.ID{}) {
		return ""
	}
	return id.String()
}

// knownChannel replies 404 when name is set and not configured.
func (s *Server) knownChannel(w http.ResponseWriter, name string) bool {
	if name == "" {
		return true
	}
	if _, ok := s.view.Load().channels[name]; !ok {
		// A channel removed from the configuration keeps its data
		// until retention_orphaned: it can still be queried.
		if stored, err := s.st.HasChannel(name); err != nil || !stored {
			writeError(w, http.StatusNotFound, "unknown channel")
			return false
		}
	}
	return true
}

type reportsPage struct {
	Reports    []json.RawMessage `json:"reports"`
	NextCursor string            `json:"next_cursor"`
}

// GET /api/v1/reports
func (s *Server) listReports(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"channel", "source_ip", "since", "until", "limit", "cursor", "origin", "evidence_source", "q"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	var sq store.Query
	if err := parseDocFilters(q, &sq); err != nil {
		replyBadParam(w, err)
		return
	}
	sq.Channel = q.Get("channel")
	if v := q.Get("source_ip"); v != "" {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			replyBadParam(w, &badParam{"source_ip", "want an IPv4 or IPv6 address"})
			return
		}
		sq.SourceIP = ip.Unmap()
	}
	if sq.Since, err = parseTime(q, "since"); err == nil {
		if sq.Until, err = parseTime(q, "until"); err == nil && !sq.Since.IsZero() && !sq.Until.IsZero() && !sq.Until.After(sq.Since) {
			err = &badParam{"until", "must be after since"}
		}
	}
	if err == nil {
		if sq.Limit, err = parseLimit(q); err == nil {
			sq.Before, err = parseCursor(q)
		}
	}
	if err != nil {
		replyBadParam(w, err)
		return
	}
	if !s.knownChannel(w, sq.Channel) {
		return
	}
	reps, next, err := s.st.Reports(sq)
	if err != nil {
		internalError(w, r, "listing reports", err)
		return
	}
	page := reportsPage{Reports: make([]json.RawMessage, 0, len(reps)), NextCursor: cursorText(next)}
	for _, rep := range reps {
		page.Reports = append(page.Reports, rep.XARF)
	}
	writeJSON(w, http.StatusOK, page)
}

// maxTextQuery bounds the q parameter of the reports listing, in bytes.
const maxTextQuery = 200

// tagPattern is a XARF tag predicate as xarf writes them (tagWord), and
// an evidence_source value.
var tagPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_+-]{0,63}$`)

// parseDocFilters reads the reports listing's filters on the document:
// origin (how the origin was found), evidence_source and q (text).
func parseDocFilters(q url.Values, sq *store.Query) error {
	if v := q.Get("origin"); v != "" {
		if !tagPattern.MatchString(v) {
			return &badParam{"origin", "want how the origin was found, such as source-ip, smtp-peer, received-chain, jmrp-subject, subject"}
		}
		sq.Method = v
	}
	if v := q.Get("evidence_source"); v != "" {
		if !tagPattern.MatchString(v) {
			return &badParam{"evidence_source", "want a XARF evidence_source, such as spamtrap or user_complaint"}
		}
		sq.EvidenceSource = v
	}
	if v := strings.TrimSpace(q.Get("q")); v != "" {
		if len(v) > maxTextQuery || !utf8.ValidString(v) {
			return &badParam{"q", fmt.Sprintf("want UTF-8 text of at most %d bytes", maxTextQuery)}
		}
		sq.Text = v
	}
	return nil
}

// pathID parses the {id} wildcard; a malformed id is simply unknown.
func pathID(r *http.Request) (store.ID, bool) {
	id, err := uuid.Parse(r.PathValue("id"))
	return id, err == nil
}

// idOnly reads the {id} of a request that takes no query parameters,
// answering 400 or 404 (with "no such <what>") itself when it cannot.
func idOnly(w http.ResponseWriter, r *http.Request, what string) (store.ID, bool) {
	if _, err := query(r, nil); err != nil {
		replyBadParam(w, err)
		return store.ID{}, false
	}
	id, ok := pathID(r)
	if !ok {
		writeError(w, http.StatusNotFound, "no such "+what)
	}
	return id, ok
}

// writeMessage serves a stored mail message as message/rfc822.
func writeMessage(w http.ResponseWriter, raw []byte, filename string) {
	h := w.Header()
	h.Set("Content-Type", "message/rfc822")
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	if filename != "" {
		h.Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(raw)
}

// GET /api/v1/reports/{id}
func (s *Server) getReport(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r, "report")
	if !ok {
		return
	}
	rep, err := s.st.GetReport(id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such report")
		return
	}
	if err != nil {
		internalError(w, r, "reading report", err)
		return
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, rep.XARF); err != nil {
		internalError(w, r, "stored report is not JSON", err)
		return
	}
	buf.WriteByte('\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}

// GET /api/v1/reports/{id}/evidence
func (s *Server) getEvidence(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r, "report")
	if !ok {
		return
	}
	// Only a report's evidence is served: a quarantined message (no
	// report) is never shown through here.
	if _, err := s.st.GetReport(id); errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such report")
		return
	} else if err != nil {
		internalError(w, r, "reading report", err)
		return
	}
	raw, err := s.st.Raw(id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no evidence stored for this report")
		return
	}
	if err != nil {
		internalError(w, r, "reading evidence", err)
		return
	}
	writeMessage(w, raw, id.String()+".eml")
}

// GET /api/v1/outbox/{id}/message: the rendered (and signed) report
// message of an outbox entry, exactly as it was or would be sent.
func (s *Server) getOutboxMessage(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r, "outbox entry")
	if !ok {
		return
	}
	raw, err := s.st.OutboxMail(id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no rendered message for this entry")
		return
	}
	if err != nil {
		internalError(w, r, "reading rendered message", err)
		return
	}
	writeMessage(w, raw, "")
}

type messageEntry struct {
	ID       string    `json:"id"`
	Channel  string    `json:"channel,omitempty"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
	Size     int       `json:"size"`
	Withheld bool      `json:"withheld,omitempty"`
	Via      string    `json:"via,omitempty"`
}

// GET /api/v1/messages?status=quarantined[&channel=][&limit=][&cursor=]
func (s *Server) listMessages(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"status", "channel", "limit", "cursor"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	if st := q.Get("status"); st != "" && st != store.StatusQuarantined {
		replyBadParam(w, &badParam{"status", "want quarantined"})
		return
	}
	channel := q.Get("channel")
	if !s.knownChannel(w, channel) {
		return
	}
	limit, err := parseLimit(q)
	if err != nil {
		replyBadParam(w, err)
		return
	}
	// The cursor is the last key of a page.
	cursor := q.Get("cursor")
	if len(cursor) > store.MaxQuarantineCursor {
		replyBadParam(w, &badParam{"cursor", "not a cursor returned by this API"})
		return
	}
	page, next, err := s.st.QuarantinePage(channel, cursor, limit)
	if err != nil {
		internalError(w, r, "listing quarantine", err)
		return
	}
	out := make([]messageEntry, 0, len(page))
	for _, p := range page {
		// Never the body, nor the record bytes, nor the envelope: they
		// may hold what redaction did not get to. Only the record's
		// non-personal fields.
		me := messageEntry{ID: p.Entry.Key, Status: store.StatusQuarantined, Reason: p.Entry.Reason, At: p.Entry.At}
		if m := p.Message; m != nil {
			me.Channel, me.Size, me.Withheld, me.Via = m.Channel, m.Size, m.Withheld, m.Envelope.Via
		}
		out = append(out, me)
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out, "next_cursor": next})
}

type outboxPage struct {
	Entries    []store.OutboxEntry `json:"entries"`
	NextCursor string              `json:"next_cursor"`
}

// GET /api/v1/outbox?status=&limit=&cursor=
func (s *Server) listOutbox(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"status", "limit", "cursor"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	status := store.OutboxStatus(q.Get("status"))
	if status != "" && !slices.Contains(store.OutboxStatuses, status) {
		names := make([]string, len(store.OutboxStatuses))
		for i, st := range store.OutboxStatuses {
			names[i] = string(st)
		}
		replyBadParam(w, &badParam{"status", "want one of " + strings.Join(names, ", ")})
		return
	}
	limit, err := parseLimit(q)
	var before store.ID
	if err == nil {
		before, err = parseCursor(q)
	}
	if err != nil {
		replyBadParam(w, err)
		return
	}
	entries, next, err := s.st.Outbox(status, before, limit)
	if err != nil {
		internalError(w, r, "listing outbox", err)
		return
	}
	if entries == nil {
		entries = []store.OutboxEntry{}
	}
	writeJSON(w, http.StatusOK, outboxPage{Entries: entries, NextCursor: cursorText(next)})
}

// GET /api/v1/backup: a consistent copy of the live database. Size and
// bytes come from one read transaction, so Content-Length is exact even
// while reports keep arriving.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r, nil); err != nil {
		replyBadParam(w, err)
		return
	}
	rc := http.NewResponseController(w)
	started := false
	n, err := s.st.WriteBackup(func(size int64) (io.Writer, error) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("Content-Disposition", `attachment; filename="xarfd-`+time.Now().UTC().Format("20060102T150405Z")+`.db"`)
		h.Set("Cache-Control", "no-store")
		started = true
		return &deadlineWriter{w: w, rc: rc}, nil
	})
	if err != nil {
		if !started {
			internalError(w, r, "starting backup", err)
			return
		}
		// Headers are gone; the short body tells the client (its
		// Content-Length does not match). Abort the connection.
		requestLog(r).Error().Err(err).Int64("written", n).Msg("backup interrupted")
		panic(http.ErrAbortHandler)
	}
	requestLog(r).Info().Int64("bytes", n).Msg("backup written")
}

// deadlineWriter extends the connection's write deadline before every
// write, so a long response is bounded per chunk, not as a whole.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(writeWait))
	return d.w.Write(p)
}
