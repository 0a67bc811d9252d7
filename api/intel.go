package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/store"
)

// streamIndicator marks a hub item that is an indicator event, not a
// report: it goes to consumers of all channels as event "indicator".
const streamIndicator = "event:indicator"

// PublishIndicator sends an indicator event (listed, expired, delisted)
// to the live stream's consumers of all channels; it never blocks.
func (h *Hub) PublishIndicator(e intel.Event) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	h.Publish(&store.Report{Via: streamIndicator, XARF: b})
}

func (s *Server) intelRoutes() []route {
	return []route{
		{"GET", "/api/v1/indicators", scopeRead, s.listIndicators},
		{"GET", "/api/v1/indicators/{kind}/{value}", scopeRead, s.getIndicator},
		{"DELETE", "/api/v1/indicators/{kind}/{value}", scopeSubmit, s.delistIndicator},
		{"GET", "/api/v1/blocklist/{file}", scopeRead, s.blocklist},
	}
}

func (s *Server) intelOn(w http.ResponseWriter) bool {
	if s.intel == nil {
		writeError(w, http.StatusNotFound, "no channel uses intel")
		return false
	}
	return true
}

type indicatorItem struct {
	Kind        string    `json:"kind"`
	Value       string    `json:"value"`
	TotalHits   int       `json:"total_hits"`
	FirstHit    time.Time `json:"first_hit"`
	LastHit     time.Time `json:"last_hit"`
	Listed      bool      `json:"listed"`
	ListedUntil time.Time `json:"listed_until,omitzero"`
}

// GET /api/v1/indicators?kind=&listed=&since=&cursor=&limit=: indicators
// in kind and value order; the cursor continues after the last one.
func (s *Server) listIndicators(w http.ResponseWriter, r *http.Request) {
	if !s.intelOn(w) {
		return
	}
	q, err := query(r, []string{"kind", "listed", "since", "cursor", "limit"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	kinds := intel.Kinds
	if k := q.Get("kind"); k != "" {
		kind, ok := intel.ParseKind(k)
		if !ok {
			replyBadParam(w, &badParam{"kind", "want ip, domain, url or email"})
			return
		}
		kinds = []intel.Kind{kind}
	}
	var listed *bool
	switch q.Get("listed") {
	case "":
	case "true", "1":
		t := true
		listed = &t
	case "false", "0":
		f := false
		listed = &f
	default:
		replyBadParam(w, &badParam{"listed", "want true or false"})
		return
	}
	since, err := parseTime(q, "since")
	if err != nil {
		replyBadParam(w, err)
		return
	}
	limit, err := parseLimit(q)
	if err != nil {
		replyBadParam(w, err)
		return
	}
	var afterKind intel.Kind
	var afterValue string
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		k, v, ok := strings.Cut(string(b), "\x00")
		kind, kok := intel.ParseKind(k)
		if err != nil || !ok || !kok {
			replyBadParam(w, &badParam{"cursor", "not a cursor returned by this API"})
			return
		}
		afterKind, afterValue = kind, v
	}
	out := []indicatorItem{}
	next := ""
	for _, k := range kinds {
		if afterKind != "" && indexKind(k) < indexKind(afterKind) {
			continue
		}
		after := ""
		if k == afterKind {
			after = afterValue
		}
		err := s.st.IntelForEach(string(k), after, func(ind *store.IntelIndicator) error {
			if len(out) == limit {
				last := out[len(out)-1]
				next = base64.RawURLEncoding.EncodeToString([]byte(last.Kind + "\x00" + last.Value))
				return store.ErrStop
			}
			if len(ind.Hits) == 0 || ind.Hits[len(ind.Hits)-1].Time.Before(since) {
				return nil
			}
			st := s.intel.Status(ind)
			if listed != nil && st.Listed != *listed {
				return nil
			}
			it := indicatorItem{Kind: ind.Kind, Value: ind.Value, TotalHits: ind.Total, FirstHit: ind.Hits[0].Time,
				LastHit: ind.Hits[len(ind.Hits)-1].Time, Listed: st.Listed}
			if st.Listed {
				it.ListedUntil = st.Until
			}
			out = append(out, it)
			return nil
		})
		if err != nil {
			internalError(w, r, "listing indicators", err)
			return
		}
		if next != "" {
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"indicators": out, "next_cursor": next})
}

func indexKind(k intel.Kind) int {
	for i, x := range intel.Kinds {
		if x == k {
			return i
		}
	}
	return -1
}

// pathIndicator reads {kind}/{value}; a URL value comes percent-encoded
// as one path segment.
func pathIndicator(w http.ResponseWriter, r *http.Request) (intel.Kind, string, bool) {
	kind, ok := intel.ParseKind(r.PathValue("kind"))
	if !ok {
		writeError(w, http.StatusNotFound, "unknown indicator kind: want ip, domain, url or email")
		return "", "", false
	}
	v := r.PathValue("value")
	switch kind {
	case intel.KindIP:
		// The stored form: 2001:db8::1, not 2001:0DB8:0::1.
		if a, err := netip.ParseAddr(v); err == nil {
			v = a.Unmap().String()
		}
	case intel.KindDomain, intel.KindEmail:
		v = strings.ToLower(v)
	}
	return kind, v, true
}

// GET /api/v1/indicators/{kind}/{value}: the indicator's hits and why it
// is or is not listed.
func (s *Server) getIndicator(w http.ResponseWriter, r *http.Request) {
	if !s.intelOn(w) {
		return
	}
	kind, v, ok := pathIndicator(w, r)
	if !ok {
		return
	}
	ind, st, err := s.intel.Get(kind, v)
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "not found", "kind": kind, "value": v, "listed": false,
			"why": "not listed: no report of an intel channel named it (or its hits expired with their reports)"})
		return
	}
	if err != nil {
		internalError(w, r, "reading indicator", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": ind.Kind, "value": ind.Value, "total_hits": ind.Total,
		"hits": ind.Hits, "status": st, "delisted": ind.Delisted})
}

// DELETE /api/v1/indicators/{kind}/{value} {"reason":…}: delist by hand;
// the reason is kept, and only later hits list it again.
func (s *Server) delistIndicator(w http.ResponseWriter, r *http.Request) {
	if !s.intelOn(w) {
		return
	}
	kind, v, ok := pathIndicator(w, r)
	if !ok {
		return
	}
	var body struct {
		Reason string `json:"reason"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || strings.TrimSpace(body.Reason) == "" || len(body.Reason) > 1000 {
		writeError(w, http.StatusBadRequest, `want a JSON body {"reason":"…"} with a reason of at most 1000 bytes`)
		return
	}
	by := ""
	if t := tokenOf(r); t != nil {
		by = t.name
	}
	ind, err := s.intel.Delist(kind, v, strings.TrimSpace(body.Reason), by)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if err != nil {
		internalError(w, r, "delisting indicator", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": ind.Kind, "value": ind.Value, "listed": false, "delisted": ind.Delisted})
}

// GET /api/v1/blocklist/{kind}.txt: what is listed now, one per line.
func (s *Server) blocklist(w http.ResponseWriter, r *http.Request) {
	if !s.intelOn(w) {
		return
	}
	name, ok := strings.CutSuffix(r.PathValue("file"), ".txt")
	kind, kok := intel.ParseKind(name)
	if !ok || !kok {
		writeError(w, http.StatusNotFound, "want ip.txt, domain.txt, url.txt or email.txt")
		return
	}
	var b strings.Builder
	for _, v := range s.intel.Listed(kind) {
		b.WriteString(v)
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "max-age=60")
	io.WriteString(w, b.String())
}
