package ingest

import (
	"fmt"
	"time"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/store"
)

// staleReason says why a complaint is too old to report, or "" when it
// is not: its Arrival-Date (or the pre-RFC Received-Date) lies more than
// maxAge before it reached us. Abuse desks discard reports about old
// incidents, and a complaint that old is usually a replay or a backlog.
// A date we could not read, or one in the future, is not judged.
func staleReason(parsed *arf.Report, received time.Time, maxAge time.Duration) string {
	if parsed == nil || parsed.ArrivalDate == nil || !parsed.ArrivalDate.Parsed || maxAge <= 0 {
		return ""
	}
	d := parsed.ArrivalDate
	age := received.Sub(d.Time)
	if age <= maxAge {
		return ""
	}
	return fmt.Sprintf("complaint older than reporter.max_age (%s): %s %s, %s before it reached us; abuse desks discard stale reports, so it is stored and not reported",
		maxAge, d.Field, d.Time.UTC().Format(time.RFC3339), age.Round(time.Hour))
}

// withholdStale sets a new outbox entry withheld when its complaint is
// stale: it is stored with the report, never due, and the reason is in
// the outbox listing.
func withholdStale(e *store.OutboxEntry, reason string) {
	e.Status, e.Reason = store.OutboxWithheld, reason
}
