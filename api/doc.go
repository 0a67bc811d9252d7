// Package api is xarfd's HTTP interface: querying stored reports and
// their evidence, the quarantine and the outbox; submitting messages and
// XARF documents into the same ingest path as SMTP; a Server-Sent Events
// stream of new reports; Prometheus metrics; health; and a hot backup of
// the database.
//
// It is plain net/http with Go 1.22 ServeMux patterns. When http.tokens
// are configured every /api/v1 route needs "Authorization: Bearer
// <token>"; a presented token is hashed with sha256 and compared in
// constant time with every configured hash. Scopes: read (queries and
// the stream), submit (POST, limited to the token's channels when it
// lists any), admin (backup; implies read). /healthz and /metrics are
// open.
//
// Error replies are JSON {"error": "..."} with a fixed text; internal
// error texts are logged with the request id, never sent. One log line
// per request names the method, the path (never the query, which may
// hold addresses), the status, the duration and the token's name.
//
// docs/api.md is the user-facing reference.
package api
