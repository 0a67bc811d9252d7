package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/xarfd/xarfd/store"
)

// maxActionBody bounds the optional {"reason": …} of an outbox action.
const maxActionBody = 4 << 10

// POST /api/v1/outbox/{id}/retry: the entry is pending and due now
// (Options.Retry; in a cluster on every node, sent by one). POST
// /api/v1/outbox/{id}/cancel: a pending entry is never sent
// (Options.Cancel; in a cluster by no node). Both take an
// optional JSON body {"reason": "…"} and answer the entry; 404 for an
// unknown id, 409 when its status does not allow the action.
func (s *Server) retryOutbox(w http.ResponseWriter, r *http.Request) {
	s.outboxAction(w, r, "retry", func(id store.ID, now time.Time, reason string) (*store.OutboxEntry, error) {
		return s.retry(r.Context(), id, now, reason)
	})
}

func (s *Server) cancelOutbox(w http.ResponseWriter, r *http.Request) {
	s.outboxAction(w, r, "cancel", func(id store.ID, now time.Time, reason string) (*store.OutboxEntry, error) {
		return s.cancel(r.Context(), id, now, reason)
	})
}

func (s *Server) outboxAction(w http.ResponseWriter, r *http.Request, verb string, act func(store.ID, time.Time, string) (*store.OutboxEntry, error)) {
	id, ok := idOnly(w, r, "outbox entry")
	if !ok { // the Content-Type was checked by the route (guard.go)
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	raw, ok := readOptionalBody(w, r)
	if !ok {
		return
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			writeError(w, http.StatusBadRequest, `want a JSON object {"reason": "…"} or no body`)
			return
		}
	}
	// A token restricted to some channels acts on their entries only;
	// the others look absent to it, as their reports do.
	e, err := s.st.GetOutbox(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !tokenOf(r).mayFeed(e.Channel)) {
		writeError(w, http.StatusNotFound, "no such outbox entry")
		return
	}
	if err != nil {
		internalError(w, r, "reading outbox entry", err)
		return
	}
	by := "an operator"
	if t := tokenOf(r); t != nil {
		by = "token " + t.name
	}
	reason := verb + " requested through the API by " + by
	if why := strings.Join(strings.Fields(body.Reason), " "); why != "" {
		reason += ": " + truncate(why, 200)
	}
	e, err = act(id, time.Now().UTC(), reason)
	var te *store.TransitionError
	switch {
	case errors.As(err, &te):
		writeError(w, http.StatusConflict, "cannot "+verb+" an entry that is "+string(te.From))
		return
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such outbox entry")
		return
	case err != nil:
		internalError(w, r, verb+" of outbox entry", err)
		return
	}
	requestLog(r).Info().Str("id", id.String()).Str("action", verb).Str("status", string(e.Status)).Msg("outbox entry changed")
	writeJSON(w, http.StatusOK, e)
}

// outboxDetail is one entry with its history. The entry's own fields stay
// as the listing has them ("attempts" is its count of deliveries begun),
// so the rows are "history".
type outboxDetail struct {
	*store.OutboxEntry
	// History is the entry's rows, oldest first: one per SMTP
	// transaction and per decision (store.Attempt); HistoryDropped
	// counts older rows no longer kept (store.MaxAttemptsKept).
	History        []store.Attempt `json:"history"`
	HistoryDropped uint32          `json:"history_dropped"`
}

// GET /api/v1/outbox/{id}: the entry and its history. A token restricted
// to some channels sees their entries only.
func (s *Server) getOutbox(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r, "outbox entry")
	if !ok {
		return
	}
	var (
		e *store.OutboxEntry
		h store.AttemptHistory
	)
	// One read transaction: the history is the entry's as it stands.
	err := s.st.View(func(tx *bbolt.Tx) error {
		var err error
		if e, err = store.GetOutboxTx(tx, id); err != nil {
			return err
		}
		h, err = store.AttemptsTx(tx, id)
		return err
	})
	// A token's channels restrict what it submits and acts on, not what
	// it reads: as the listing, the read scope sees every entry.
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such outbox entry")
		return
	}
	if err != nil {
		internalError(w, r, "reading outbox entry", err)
		return
	}
	writeJSON(w, http.StatusOK, outboxDetail{OutboxEntry: e, History: h.Attempts, HistoryDropped: h.Dropped})
}

// readOptionalBody reads a small body, which may be empty.
func readOptionalBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength == 0 {
		return nil, true
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxActionBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "body exceeds the size limit")
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading the body failed")
		return nil, false
	}
	return raw, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		n--
	}
	return s[:n] + "…"
}
