package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/xarfd/xarfd/internal/sse"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// Hub fans new reports out to live-stream consumers. Publish never
// blocks: a consumer whose buffer is full is dropped (its stream ends,
// and it is counted with metrics.StreamDropped) rather than slowing
// ingest down. A nil *Hub ignores Publish.
type Hub struct {
	m    *metrics.Metrics
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// NewHub returns an empty hub counting drops in m (nil counts nothing).
func NewHub(m *metrics.Metrics) *Hub {
	return &Hub{m: m, subs: map[*Subscription]struct{}{}}
}

// Subscription is one consumer of the hub.
type Subscription struct {
	channel string
	c       chan *store.Report
	dropped chan struct{}
}

// C delivers the reports published after Subscribe.
func (s *Subscription) C() <-chan *store.Report { return s.c }

// Dropped is closed when the hub dropped the consumer for lagging.
func (s *Subscription) Dropped() <-chan struct{} { return s.dropped }

// Subscribe registers a consumer of the reports of channel (all when
// empty) that may lag buffer reports behind.
func (h *Hub) Subscribe(channel string, buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	sub := &Subscription{channel: channel, c: make(chan *store.Report, buffer), dropped: make(chan struct{})}
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	h.mu.Unlock()
	return sub
}

// Unsubscribe removes sub; it is safe after a drop.
func (h *Hub) Unsubscribe(sub *Subscription) {
	h.mu.Lock()
	delete(h.subs, sub)
	h.mu.Unlock()
}

// Publish hands r to every consumer of its channel without waiting for
// any. It is meant for ingest.Options.OnReport.
func (h *Hub) Publish(r *store.Report) {
	if h == nil || r == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs {
		if sub.channel != "" && sub.channel != r.Channel {
			continue
		}
		select {
		case sub.c <- r:
		default:
			delete(h.subs, sub)
			close(sub.dropped)
			h.m.StreamDropped()
		}
	}
}

// Len returns the number of consumers.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// admitStream counts one more open live stream, or answers 503 with
// Retry-After when maxStreams are open: each one holds a connection, a
// goroutine and a buffer of up to StreamBuffer reports for as long as
// the client likes, so a client that opens them in a loop would
// otherwise grow the daemon without bound. The caller defers release.
func (s *Server) admitStream(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	if n := s.streams.Add(1); n > int64(s.maxStreams) {
		s.streams.Add(-1)
		s.m.StreamRefused(metrics.StreamAPI)
		requestLog(r).Warn().Int("limit", s.maxStreams).Msg("live stream refused: too many open")
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "too many live streams, try again later")
		return nil, false
	}
	return func() { s.streams.Add(-1) }, true
}

// GET /api/v1/stream?channel=: Server-Sent Events. Each new report is
// one event "report" whose id is the report id and whose data is the
// XARF document on one line; a comment line keeps the connection alive
// every Heartbeat.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"channel"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	channel := q.Get("channel")
	if !s.knownChannel(w, channel) {
		return
	}
	release, ok := s.admitStream(w, r)
	if !ok {
		return
	}
	defer release()
	sub := s.hub.Subscribe(channel, s.buf)
	defer s.hub.Unsubscribe(sub)
	st, err := sse.Open(w, writeWait)
	if err != nil {
		internalError(w, r, "stream", err)
		return
	}
	if !st.Hello() {
		return
	}
	tick := time.NewTicker(s.beat)
	defer tick.Stop()
	var ev bytes.Buffer
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-sub.Dropped():
			requestLog(r).Warn().Msg("stream consumer dropped: it did not keep up")
			return
		case <-tick.C:
			if !st.Heartbeat() {
				return
			}
		case rep := <-sub.C():
			ev.Reset()
			if rep.Via == streamIndicator {
				ev.WriteString("event: indicator\ndata: ")
			} else {
				ev.WriteString("event: report\nid: ")
				ev.WriteString(rep.ID.String())
				ev.WriteString("\ndata: ")
			}
			// Compact JSON has no raw newline, so the document is one
			// data line.
			if err := json.Compact(&ev, rep.XARF); err != nil {
				requestLog(r).Error().Err(err).Str("id", rep.ID.String()).Msg("stream: report is not JSON")
				continue
			}
			ev.WriteString("\n\n")
			if !st.Send(ev.Bytes()) {
				return
			}
		}
	}
}
