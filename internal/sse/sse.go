// Package sse writes Server-Sent Events streams (WHATWG HTML, section
// 9.2 "Server-sent events"): the response headers, the opening comment,
// events and keep-alive comments, each write bounded by a deadline so
// that a client that stops reading is dropped instead of holding a
// goroutine and its buffers.
//
// The API's report and case streams and the console's live rows use it;
// what each sends is theirs.
package sse

import (
	"fmt"
	"net/http"
	"time"
)

// Stream is one open event stream.
type Stream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	wait time.Duration
}

// Open makes the response an event stream: no read deadline for its life
// (an HTTP/1.1 connection clears it once the handler runs, an HTTP/2
// stream would keep the server's ReadTimeout), the headers that keep
// proxies from buffering it, and 200. It fails, before anything is
// written, only when the read deadline cannot be cleared; the caller
// then answers an error itself. writeWait bounds each later write.
func Open(w http.ResponseWriter, writeWait time.Duration) (*Stream, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clearing read deadline: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &Stream{w: w, rc: rc, wait: writeWait}, nil
}

// Hello sends the opening comment, which tells the client it is
// subscribed, and asks it to reconnect after 3 s when the stream ends.
// Subscribe to the events first, so that none falls between the two.
func (s *Stream) Hello() bool { return s.Send([]byte(": subscribed\nretry: 3000\n\n")) }

// Heartbeat sends a comment that keeps idle connections (and proxies)
// from timing out.
func (s *Stream) Heartbeat() bool { return s.Send([]byte(": heartbeat\n\n")) }

// Send writes b, which must be whole events, and flushes it. False means
// the client is gone or too slow: end the stream.
func (s *Stream) Send(b []byte) bool {
	s.rc.SetWriteDeadline(time.Now().Add(s.wait))
	if _, err := s.w.Write(b); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}
