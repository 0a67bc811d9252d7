package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

// messageDetail is one stored message record as the API shows it: the
// record's fields and the sender's side of its envelope. Never the body,
// nor the recipients (only how many: for a redacting channel they are
// pseudonyms, and a console has no use for them either way).
type messageDetail struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	// Status is received, converted (a report with the same id exists)
	// or quarantined (Reason says why).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// QuarantinedAt is the quarantine entry's time (the arrival).
	QuarantinedAt *time.Time `json:"quarantined_at,omitempty"`
	Size          int        `json:"size"`
	Withheld      bool       `json:"withheld,omitempty"`
	Report        bool       `json:"report"`

	ReceivedAt time.Time       `json:"received_at"`
	Via        string          `json:"via"`
	PeerIP     netip.Addr      `json:"peer_ip,omitzero"`
	PeerPort   uint16          `json:"peer_port,omitempty"`
	HELO       string          `json:"helo,omitempty"`
	MailFrom   string          `json:"mail_from"`
	TLS        *store.TLSState `json:"tls,omitempty"`
	AuthUser   string          `json:"auth_user,omitempty"`
	RcptCount  int             `json:"rcpt_count"`
}

// GET /api/v1/messages/{id}: the record of one stored message.
func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r, "message")
	if !ok {
		return
	}
	m, err := s.st.Message(id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such message")
		return
	}
	if err != nil {
		internalError(w, r, "reading message", err)
		return
	}
	d := messageDetail{
		ID: m.ID.String(), Channel: m.Channel, Status: m.Status, Reason: m.Reason, Size: m.Size, Withheld: m.Withheld,
		ReceivedAt: m.Envelope.ReceivedAt, Via: m.Envelope.Via, PeerIP: m.Envelope.PeerIP, PeerPort: m.Envelope.PeerPort,
		HELO: m.Envelope.HELO, MailFrom: m.Envelope.MailFrom, TLS: m.Envelope.TLS, AuthUser: m.Envelope.AuthUser,
		RcptCount: len(m.Envelope.Rcpts),
	}
	if m.Status == store.StatusQuarantined {
		if q, _, _, err := s.st.Quarantined(id); err == nil {
			at := q.At.UTC()
			d.QuarantinedAt = &at
		}
	}
	if _, err := s.st.GetReportMeta(id); err == nil {
		d.Report = true
	} else if !errors.Is(err, store.ErrNotFound) {
		internalError(w, r, "reading report", err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// quarantineTarget reads the {id} of a quarantine action and the optional
// body {"reason": "…"}, and checks that the id is a quarantined message
// the token may act on, and returns the ingester that acts. It answers
// the request itself when not.
func (s *Server) quarantineTarget(w http.ResponseWriter, r *http.Request) (store.ID, string, *ingest.Ingester, bool) {
	id, ok := idOnly(w, r, "quarantined message")
	if !ok { // the Content-Type was checked by the route (guard.go)
		return id, "", nil, false
	}
	raw, ok := readOptionalBody(w, r)
	if !ok {
		return id, "", nil, false
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			writeError(w, http.StatusBadRequest, `want a JSON object {"reason": "…"} or no body`)
			return id, "", nil, false
		}
	}
	_, m, _, err := s.st.Quarantined(id)
	if err != nil {
		quarantineError(w, r, err)
		return id, "", nil, false
	}
	// A token restricted to some channels acts on their messages only;
	// the others look absent to it.
	if !tokenOf(r).mayFeed(m.Channel) {
		writeError(w, http.StatusNotFound, "no such quarantined message")
		return id, "", nil, false
	}
	in := s.view.Load().in
	if in == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable, try again later")
		return id, "", nil, false
	}
	return id, truncate(strings.Join(strings.Fields(body.Reason), " "), 200), in, true
}

// quarantineError answers the errors of the quarantine actions: 404 for
// what is not a quarantined message (any more), 409 for one that cannot
// be acted on, each with a fixed text.
func quarantineError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrNotQuarantined):
		writeError(w, http.StatusNotFound, "no such quarantined message")
	case errors.Is(err, store.ErrUnreadableQuarantine):
		writeError(w, http.StatusConflict, "the quarantine entry is a record that could not be read, not a message")
	case errors.Is(err, ingest.ErrWithheld):
		writeError(w, http.StatusConflict, "the message body was withheld (its redaction could not be guaranteed): nothing to reprocess")
	case errors.Is(err, ingest.ErrNoChannel):
		writeError(w, http.StatusConflict, "the message's channel is not configured any more")
	case errors.Is(err, ingest.ErrUnredacted):
		writeError(w, http.StatusConflict, "the channel redacts now, but this message was stored unredacted before it did; delete it instead")
	default:
		internalError(w, r, "acting on a quarantined message", err)
	}
}

type reprocessReply struct {
	ID string `json:"id"`
	// Status is "report" or "quarantined".
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// POST /api/v1/messages/{id}/reprocess: run a quarantined message through
// its channel's conversion again (ingest.Reprocess).
func (s *Server) reprocessMessage(w http.ResponseWriter, r *http.Request) {
	id, why, in, ok := s.quarantineTarget(w, r)
	if !ok {
		return
	}
	res, err := in.Reprocess(id)
	if err != nil {
		quarantineError(w, r, err)
		return
	}
	out := reprocessReply{ID: id.String(), Status: "report"}
	if res.Quarantined {
		out.Status, out.Reason = store.StatusQuarantined, res.Reason
	}
	requestLog(r).Info().Str("id", out.ID).Str("action", "reprocess").Str("status", out.Status).Str("why", why).Msg("quarantined message reprocessed")
	writeJSON(w, http.StatusOK, out)
}

// DELETE /api/v1/messages/{id}: delete a quarantined message, its bytes
// and its quarantine entry (ingest.DeleteQuarantined: on every node of a
// cluster).
func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request) {
	id, why, in, ok := s.quarantineTarget(w, r)
	if !ok {
		return
	}
	if err := in.DeleteQuarantined(id); err != nil {
		quarantineError(w, r, err)
		return
	}
	requestLog(r).Info().Str("id", id.String()).Str("action", "delete").Str("why", why).Msg("quarantined message deleted")
	w.WriteHeader(http.StatusNoContent)
}
