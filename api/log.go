package api

import (
	"context"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// reqInfo is what the request log line needs from deeper handlers.
type reqInfo struct {
	id    string
	token string // name of the authenticated token, "" when open
	log   zerolog.Logger
}

type ctxKey struct{}

func infoOf(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{log: zerolog.Nop()}
}

// requestLog is the server's logger with the request id.
func requestLog(r *http.Request) *zerolog.Logger {
	return &infoOf(r).log
}

// recorder captures the status and size of a reply. Unwrap lets
// http.ResponseController reach the connection (Flush, deadlines).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests writes one line per request: method, path (never the
// query: it may hold addresses), status, duration, token name. Bodies
// are never logged.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &reqInfo{id: newRequestID()}
		info.log = s.log.With().Str("request_id", info.id).Logger()
		w.Header().Set("X-Request-Id", info.id)
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		ev := info.log.Info()
		switch {
		case rec.status >= 500:
			ev = info.log.Warn()
		case r.URL.Path == "/healthz":
			// Probes come every few seconds: at info they would bury
			// everything else.
			ev = info.log.Debug()
		}
		ev.Str("method", r.Method).
			Str("path", r.URL.Path).
			Int("status", rec.status).
			Dur("duration", time.Since(start)).
			Int64("bytes", rec.bytes).
			Str("token", info.token).
			Str("remote", remoteIP(r)).
			Msg("http request")
	})
}

// newStdLogger routes net/http's own complaints (TLS handshakes, bad
// requests) into zerolog.
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// NoteToken names the token behind r in its request log line: for the
// console, whose requests carry a session cookie instead of a bearer
// token. Outside the API's handler it does nothing.
func NoteToken(r *http.Request, name string) {
	if i, ok := r.Context().Value(ctxKey{}).(*reqInfo); ok {
		i.token = name
	}
}
