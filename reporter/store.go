package reporter

import (
	"net/netip"
	"time"

	"github.com/xarfd/xarfd/reporter/contact"
	"github.com/xarfd/xarfd/store"
)

// Store is what the reporter needs of the store: reads, and the outbox
// transitions. *store.Store implements it; tests wrap one to make its
// writes fail as a full disk does.
type Store interface {
	DueOutbox(now time.Time, limit int) ([]store.OutboxEntry, time.Time, error)
	OutboxByStatus(status store.OutboxStatus) ([]store.OutboxEntry, error)
	OutboxMail(id store.ID) ([]byte, error)
	PruneOutboxMail() (int, error)
	GetReportMeta(id store.ID) (*store.Report, error)
	GetReport(id store.ID) (*store.Report, error)
	Raw(id store.ID) ([]byte, error)
	contact.Cache

	ClaimBatch(ids []store.ID, now time.Time, lease time.Duration) ([]store.StepResult, error)
	Settle(chains [][]store.Step) ([][]store.StepResult, error)
	Claim(id store.ID, now time.Time, lease time.Duration) (*store.OutboxEntry, error)
	Release(id store.ID, now time.Time) (*store.OutboxEntry, error)
	Withhold(id store.ID, now time.Time, reason string, src netip.Addr) (*store.OutboxEntry, error)
	Dedup(id store.ID, now time.Time, src netip.Addr, fp string, window time.Duration) (store.ID, bool, error)
	SetContact(id store.ID, now time.Time, recipients []string, source string, dropped []string) (*store.OutboxEntry, error)
	DryRun(id store.ID, now time.Time, m *store.RenderedMail, reason string) (*store.OutboxEntry, error)
	BeginDelivery(id store.ID, now time.Time, lease time.Duration, perHour int, m *store.RenderedMail) (*store.OutboxEntry, *store.RateLimit, error)
	MarkTransmitted(id store.ID, now time.Time) error
	RecordTransaction(id store.ID, now time.Time, t store.Transaction) (*store.OutboxEntry, error)
	MarkSent(id store.ID, now time.Time, lastErr string, forget bool) (*store.OutboxEntry, error)
	GiveUp(id store.ID, now time.Time, lastErr, reason string, row *store.Attempt) (*store.OutboxEntry, error)
	Retry(id store.ID, now, next time.Time, lastErr, reason string, row *store.Attempt) (*store.OutboxEntry, error)
	// For a cluster's Claims.
	Wait(id store.ID, now, next time.Time, reason string) (*store.OutboxEntry, error)
	WaitRate(id store.ID, now time.Time, perHour int, l store.RateLimit) (*store.OutboxEntry, error)
	MarkSentElsewhere(id store.ID, now time.Time, by store.SentElsewhere, forget bool) (*store.OutboxEntry, error)
	// For an operator's cancel (Reporter.Cancel).
	GetOutbox(id store.ID) (*store.OutboxEntry, error)
	Cancel(id store.ID, now time.Time, reason string) (*store.OutboxEntry, error)
	// For an operator's retry (Reporter.Retry).
	Requeue(id store.ID, now time.Time, reason string) (*store.OutboxEntry, error)
}

var _ Store = (*store.Store)(nil)
