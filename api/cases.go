package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xarfd/xarfd/internal/sse"
	"github.com/xarfd/xarfd/store"
)

// CaseService acts on own-network cases (package cases; serve wires it).
// Errors wrapping store.ErrConflict are shown to the client.
type CaseService interface {
	Act(ctx context.Context, id store.ID, action, by, reason string) (*store.Case, error)
}

// CaseHub fans case changes out to GET /api/v1/stream/cases. Publish
// never blocks: a consumer that does not keep up misses events (it can
// list the cases again). A nil *CaseHub ignores Publish.
type CaseHub struct {
	mu   sync.Mutex
	subs map[chan *store.Case]struct{}
}

// NewCaseHub returns an empty hub.
func NewCaseHub() *CaseHub { return &CaseHub{subs: map[chan *store.Case]struct{}{}} }

// Publish sends c to every consumer with room for it.
func (h *CaseHub) Publish(c *store.Case) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- c:
		default:
		}
	}
}

func (h *CaseHub) subscribe() chan *store.Case {
	ch := make(chan *store.Case, 64)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

func (h *CaseHub) unsubscribe(ch chan *store.Case) {
	h.mu.Lock()
	delete(h.subs, ch)
	h.mu.Unlock()
}

// caseStates are the values of ?state=.
var caseStates = []string{store.CaseOpen, store.CaseNotified, store.CaseRestricted, store.CaseResolved}

type casesPage struct {
	Cases      []store.Case `json:"cases"`
	NextCursor string       `json:"next_cursor"`
}

// GET /api/v1/cases?state=&subscriber=&limit=&cursor=: newest first,
// paged like the reports.
func (s *Server) listCases(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"state", "subscriber", "limit", "cursor"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	cq := store.CaseQuery{State: q.Get("state"), Subscriber: q.Get("subscriber")}
	if cq.State != "" && !slices.Contains(caseStates, cq.State) {
		replyBadParam(w, &badParam{"state", "want " + strings.Join(caseStates, ", ")})
		return
	}
	if cq.Limit, err = parseLimit(q); err == nil {
		cq.Before, err = parseCursor(q)
	}
	if err != nil {
		replyBadParam(w, err)
		return
	}
	cs, next, err := s.st.Cases(cq)
	if err != nil {
		internalError(w, r, "listing cases", err)
		return
	}
	if cs == nil {
		cs = []store.Case{}
	}
	writeJSON(w, http.StatusOK, casesPage{Cases: cs, NextCursor: cursorText(next)})
}

// GET /api/v1/cases/{id}: the case with its reports and history.
func (s *Server) getCase(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r, "case")
	if !ok {
		return
	}
	c, err := s.st.GetCase(id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such case")
		return
	}
	if err != nil {
		internalError(w, r, "reading case", err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// maxReasonBytes bounds the body of a case action.
const maxReasonBytes = 4096

// POST /api/v1/cases/{id}/notify|restrict|resolve, body {"reason":…}.
func (s *Server) actCase(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := idOnly(w, r, "case")
		if !ok {
			return
		}
		if s.cases == nil {
			writeError(w, http.StatusServiceUnavailable, "cases are not running")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReasonBytes))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		var in struct {
			Reason string `json:"reason"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil || strings.TrimSpace(in.Reason) == "" {
			writeError(w, http.StatusBadRequest, `want a JSON body {"reason": "…"} with a reason`)
			return
		}
		by := "api (no tokens configured) from " + remoteIP(r)
		if t := tokenOf(r); t != nil {
			by = "token " + t.name
		}
		c, err := s.cases.Act(r.Context(), id, action, by, strings.TrimSpace(in.Reason))
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusNotFound, "no such case")
		case errors.Is(err, store.ErrConflict):
			writeError(w, http.StatusConflict, err.Error())
		case err != nil:
			internalError(w, r, "acting on case", err)
		default:
			writeJSON(w, http.StatusOK, c)
		}
	}
}

// GET /api/v1/stream/cases: Server-Sent Events, one "case" event (data:
// the case as JSON) per change.
func (s *Server) streamCases(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r, nil); err != nil {
		replyBadParam(w, err)
		return
	}
	release, ok := s.admitStream(w, r)
	if !ok {
		return
	}
	defer release()
	ch := s.caseHub.subscribe()
	defer s.caseHub.unsubscribe(ch)
	st, err := sse.Open(w, writeWait)
	if err != nil {
		internalError(w, r, "case stream", err)
		return
	}
	if !st.Hello() {
		return
	}
	tick := time.NewTicker(s.beat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-tick.C:
			if !st.Heartbeat() {
				return
			}
		case c := <-ch:
			b, err := json.Marshal(c)
			if err != nil {
				continue
			}
			var ev bytes.Buffer
			ev.WriteString("event: case\nid: " + c.ID.String() + "\ndata: ")
			ev.Write(b)
			ev.WriteString("\n\n")
			if !st.Send(ev.Bytes()) {
				return
			}
		}
	}
}
