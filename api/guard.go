package api

import (
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/xarfd/xarfd/config"
)

// writeContentType is the media type a write route takes ("" for reads):
// message/rfc822 for a submitted message, application/json for every
// other write (XARF documents and actions, even without a body). A
// browser can send neither cross-site without a CORS preflight, which
// this API never grants: requiring them is the first line against CSRF.
func writeContentType(method, path string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return ""
	}
	if method == http.MethodPost && strings.HasSuffix(path, "/messages") {
		return "message/rfc822"
	}
	return "application/json"
}

// requireContentType answers 415 unless the request's media type is
// want; a missing Content-Type is refused too.
func requireContentType(want string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != want {
			writeError(w, http.StatusUnsupportedMediaType, "want Content-Type: "+want)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkHost answers 421 Misdirected Request when the Host header names
// this server by a name it was not configured with: against DNS
// rebinding, where a web page's own name is made to resolve to
// 127.0.0.1 and its script then talks to the API as a same-origin
// client. Accepted: an IP literal that is loopback or the address the
// connection arrived on (a rebinding page always uses a name), the
// configured listen address, "localhost", and http.hostnames. The port
// is not compared: a name is what the attack needs, and proxies and
// port forwards legitimately change ports. A request without Host
// (HTTP/1.0) passes: a browser always sends one.
//
// 421 rather than 400: the request is well-formed, it was sent to a
// server that does not serve that authority (RFC 9110, section 15.5.20).
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r) {
			writeError(w, http.StatusMisdirectedRequest, "unknown Host: use the listen address, localhost or a name in http.hostnames")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(r *http.Request) bool {
	if r.Host == "" {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	hc := &s.view.Load().cfg.HTTP
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.IsLoopback() {
			return true
		}
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ap, err := netip.ParseAddrPort(la.String()); err == nil && ap.Addr().Unmap() == ip {
				return true
			}
		}
		if ap, err := netip.ParseAddrPort(hc.Listen); err == nil && ap.Addr().Unmap() == ip {
			return true
		}
		return false
	}
	if host == "localhost" {
		return true
	}
	if h, _, err := net.SplitHostPort(hc.Listen); err == nil && strings.EqualFold(strings.TrimSuffix(h, "."), host) {
		return true
	}
	return slices.ContainsFunc(hc.Hostnames, func(n string) bool {
		return strings.EqualFold(strings.TrimSuffix(n, "."), host)
	})
}

// crossOrigin refuses, with 403, a write that a browser sends on behalf
// of another site: Sec-Fetch-Site other than same-origin or none, or
// (from older browsers) an Origin whose host is not the Host. Requests
// without either header (curl, scripts, xarfd's own commands) pass.
// This is net/http's CrossOriginProtection; GET, HEAD and OPTIONS are
// never refused.
func (s *Server) crossOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requestLog(r).Warn().Str("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")).Msg("cross-site write refused")
		writeError(w, http.StatusForbidden, "cross-site request refused")
	}))
	return p.Handler(next)
}

// limitBody answers 413 when a request announces a body above
// http.max_body_bytes, and cuts off one that grows past it while read.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.maxBody() {
			tooLarge(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.maxBody())
		next.ServeHTTP(w, r)
	})
}

func (s *Server) maxBody() int64 {
	if n := s.view.Load().cfg.HTTP.MaxBodyBytes; n > 0 {
		return n
	}
	return config.DefaultHTTPMaxBodyBytes
}

// tooLarge answers 413 and closes the connection: the rest of the body
// is not read, so the connection cannot carry another request.
func tooLarge(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, "body exceeds the size limit")
}
