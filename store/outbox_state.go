package store

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// The outbox lifecycle. Each transition below is one durable bbolt
// transaction that checks the entry's current status first: a transition
// that the status does not allow changes nothing and returns a
// *TransitionError (errors.Is ErrIllegalTransition). The reporter claims an
// entry before it does any work on it, and the claim commits a lease: if
// the worker then fails to record what happened (the disk is full, the
// process dies), the entry comes due again when the lease runs out. No
// failure can leave an entry sending for ever, nor due again at once.

// ErrIllegalTransition is what every *TransitionError is.
var ErrIllegalTransition = errors.New("illegal outbox transition")

// TransitionError says which transition an entry's status refused.
type TransitionError struct {
	ID   ID
	Op   string
	From OutboxStatus
	// Why adds a detail ("claimed until …"), may be empty.
	Why string
}

func (e *TransitionError) Error() string {
	s := fmt.Sprintf("outbox entry %s: cannot %s an entry that is %s", e.ID, e.Op, e.From)
	if e.Why != "" {
		s += " (" + e.Why + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrIllegalTransition) hold.
func (e *TransitionError) Is(target error) bool { return target == ErrIllegalTransition }

// transition reads entry id, lets check refuse it (returning a reason, or
// "" to allow), applies fn and stores it, in one transaction. check and
// fn may run more than once (see Commit).
func (s *Store) transition(id ID, op string, check func(*OutboxEntry) (bool, string), fn func(*bbolt.Tx, *OutboxEntry) error) (*OutboxEntry, error) {
	return s.updateOutbox(id, func(tx *bbolt.Tx, e *OutboxEntry) error {
		if ok, why := check(e); !ok {
			return &TransitionError{ID: id, Op: op, From: e.Status, Why: why}
		}
		return fn(tx, e)
	})
}

// from allows the listed statuses.
func from(ss ...OutboxStatus) func(*OutboxEntry) (bool, string) {
	return func(e *OutboxEntry) (bool, string) { return slices.Contains(ss, e.Status), "" }
}

// Remaining are the recipients that have neither accepted nor refused
// the report.
func (e *OutboxEntry) Remaining() []string {
	var out []string
	for _, a := range e.Recipients {
		if !slices.Contains(e.Delivered, a) && !slices.Contains(e.Rejected, a) {
			out = append(out, a)
		}
	}
	return out
}

// interrupted records that the previous holder of a claim never
// recorded its outcome.
func interrupted(e *OutboxEntry) {
	if e.Transmitted {
		e.Resent++
		e.Transmitted = false
		e.LastError = "interrupted after the message was transmitted, before the answer was recorded; resending with the same Message-ID"
	} else {
		e.LastError = "interrupted before the message was transmitted; resending"
	}
}

// Claim takes entry id for processing until now+lease: a pending entry
// that is due, or a sending one whose lease ran out (its previous holder
// never recorded an outcome). The lease is committed before the caller
// does any work, so that whatever then fails, the entry comes due again
// at the lease's end and not before.
func (s *Store) Claim(id ID, now time.Time, lease time.Duration) (*OutboxEntry, error) {
	r, err := s.settleOne(ClaimStep(id, now, lease))
	return r.Entry, err
}

// Release makes a sending entry pending and due at now, whatever its
// lease: for the start of the process, when whoever held the claim is
// gone (the store's file lock admits one process).
func (s *Store) Release(id ID, now time.Time) (*OutboxEntry, error) {
	return s.transition(id, "release", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		interrupted(e)
		e.Status, e.NextAttempt, e.LeaseUntil, e.Updated = OutboxPending, now, time.Time{}, now
		return s.addAttempt(tx, e, Attempt{At: now, Outcome: AttemptInterrupted, Detail: "released at start: " + e.LastError})
	})
}

// Withhold ends a claimed entry: policy forbids sending it (reason says
// why). A valid src is recorded as its source address.
func (s *Store) Withhold(id ID, now time.Time, reason string, src netip.Addr) (*OutboxEntry, error) {
	r, err := s.settleOne(WithholdStep(id, now, reason, src))
	return r.Entry, err
}

// Dedup records the incident fingerprint fp of claimed entry id (source
// src). When an entry still stored recorded the same fp within window
// before now, id becomes its duplicate instead (that entry's Count goes
// up) and Dedup returns its id and true.
func (s *Store) Dedup(id ID, now time.Time, src netip.Addr, fp string, window time.Duration) (ID, bool, error) {
	r, err := s.settleOne(DedupStep(id, now, src, fp, window))
	return r.Primary, r.Duplicate, err
}

// SetContact records the recipients of a claimed entry and where they
// came from; dropped are addresses left out by the recipient cap.
func (s *Store) SetContact(id ID, now time.Time, recipients []string, source string, dropped []string) (*OutboxEntry, error) {
	r, err := s.settleOne(SetContactStep(id, now, recipients, source, dropped))
	return r.Entry, err
}

func joinRecipients(rcpts []string) string { return strings.Join(rcpts, ", ") }

// RenderedMail is a report rendered for sending: what the entry shows of
// it, and the signed bytes (kept in outbox_mail).
type RenderedMail struct {
	Format, MessageID, Subject, Preview string
	Raw                                 []byte
}

func setRendered(tx *bbolt.Tx, e *OutboxEntry, m *RenderedMail) error {
	e.Format, e.MessageID, e.Subject, e.Preview, e.RenderedSize = m.Format, m.MessageID, m.Subject, m.Preview, len(m.Raw)
	return PutOutboxMailTx(tx, e.ID, m.Raw)
}

// DryRun ends a claimed entry rendered but not sent; m may be nil when
// the entry already holds its rendered message.
func (s *Store) DryRun(id ID, now time.Time, m *RenderedMail, reason string) (*OutboxEntry, error) {
	r, err := s.settleOne(DryRunStep(id, now, m, reason))
	return r.Entry, err
}

// RateLimit is what BeginDelivery reports when a recipient's hourly
// allowance is used up: the entry is pending again until Until.
type RateLimit struct {
	Contact string
	Until   time.Time
}

// BeginDelivery starts a delivery attempt of claimed entry id: it counts
// one report to each remaining recipient against perHour, stores m (when
// not nil: the first attempt), adds an attempt and renews the lease to
// now+lease. When a recipient is over its allowance nothing is counted,
// the entry goes back to pending until a slot frees, and the returned
// *RateLimit says so. A negative perHour counts nothing here: a cluster
// counts on its shared counters before (see WaitRate).
func (s *Store) BeginDelivery(id ID, now time.Time, lease time.Duration, perHour int, m *RenderedMail) (*OutboxEntry, *RateLimit, error) {
	var limited *RateLimit
	e, err := s.transition(id, "begin a delivery of", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		limited = nil
		for _, a := range e.Remaining() {
			if perHour < 0 {
				break
			}
			ok, at, err := RateTakeTx(tx, strings.ToLower(a), now, perHour)
			if err != nil {
				return err
			}
			if !ok {
				limited = &RateLimit{Contact: a, Until: at}
				break
			}
		}
		if limited != nil {
			return errRateLimited
		}
		if m != nil {
			if err := setRendered(tx, e, m); err != nil {
				return err
			}
		}
		e.Attempts++
		e.Transmitted, e.LeaseUntil, e.Updated = false, now.Add(lease), now
		return nil
	})
	if !errors.Is(err, errRateLimited) {
		return e, nil, err
	}
	// The counting transaction was rolled back; record the wait.
	e, err = s.WaitRate(id, now, perHour, *limited)
	return e, limited, err
}

// WaitRate makes a claimed entry pending until l.Until because l.Contact
// has had perHour reports in the last hour. BeginDelivery calls it for
// the store's own counters; a cluster counts on shared ones and calls it
// when those are used up. Not a failure: Retries stays as it is.
func (s *Store) WaitRate(id ID, now time.Time, perHour int, l RateLimit) (*OutboxEntry, error) {
	return s.wait(id, now, l.Until, fmt.Sprintf("rate limit: %d reports per hour to %s; waiting until %s", perHour, l.Contact, l.Until.UTC().Format(time.RFC3339)), AttemptRateLimited)
}

// Wait makes a claimed entry pending again, due at next, for a reason
// that is nobody's failure (a rate limit, another node of a cluster
// holding the incident's claim): unlike Retry it does not count towards
// the backoff.
func (s *Store) Wait(id ID, now, next time.Time, reason string) (*OutboxEntry, error) {
	return s.wait(id, now, next, reason, AttemptDeferred)
}

func (s *Store) wait(id ID, now, next time.Time, reason string, outcome AttemptOutcome) (*OutboxEntry, error) {
	return s.transition(id, "defer", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		e.Status, e.NextAttempt, e.LeaseUntil, e.Updated = OutboxPending, next, time.Time{}, now
		e.Transmitted, e.Reason = false, reason
		return s.addAttempt(tx, e, Attempt{At: now, Outcome: outcome, Detail: reason})
	})
}

// addAttempt adds a row to e's history inside tx, by this node unless
// a names another.
func (s *Store) addAttempt(tx *bbolt.Tx, e *OutboxEntry, a Attempt) error {
	return addAttemptTx(tx, e.ID, s.node, a)
}

// SentElsewhere is what another node of a cluster recorded when it sent
// an incident (see MarkSentElsewhere).
type SentElsewhere struct {
	// Node is the cluster.node that sent it.
	Node string
	// Report is the report it sent: this entry's, or another report of
	// the same incident (source and evidence fingerprint).
	Report    ID
	At        time.Time
	MessageID string
}

// MarkSentElsewhere ends a claimed entry that another node of the
// cluster has sent: sent, when that node sent this very report, or a
// duplicate of the report it sent for the same incident (that node's
// de-duplication chose another report of it as the one to send). Either
// way SentBy names the node; nothing was sent from here. forget is
// MarkSent's, for the sent case.
func (s *Store) MarkSentElsewhere(id ID, now time.Time, by SentElsewhere, forget bool) (*OutboxEntry, error) {
	return s.transition(id, "mark sent elsewhere", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		e.NextAttempt, e.LeaseUntil, e.Transmitted, e.Updated = time.Time{}, time.Time{}, false, now
		e.SentBy = by.Node
		if by.Report != id {
			e.Status, e.DuplicateOf = OutboxDuplicate, by.Report
			e.Reason = fmt.Sprintf("same incident as report %s, sent by cluster node %s at %s", by.Report, by.Node, by.At.UTC().Format(time.RFC3339))
			return s.addAttempt(tx, e, Attempt{At: now, Node: by.Node, Outcome: AttemptSentElsewhere, Detail: e.Reason + "; recorded by " + s.node})
		}
		e.Status, e.SentAt = OutboxSent, by.At
		e.Reason = "sent by cluster node " + by.Node
		if err := s.addAttempt(tx, e, Attempt{At: now, Node: by.Node, Outcome: AttemptSentElsewhere,
			Detail: fmt.Sprintf("sent at %s; recorded by %s", by.At.UTC().Format(time.RFC3339), s.node)}); err != nil {
			return err
		}
		if e.MessageID == "" {
			e.MessageID = by.MessageID
		}
		if forget {
			e.DataDeleted = true
			return ForgetReportTx(tx, e.ID)
		}
		return nil
	})
}

// errRateLimited aborts BeginDelivery's counting transaction, rolling
// back the counts it took.
var errRateLimited = errors.New("rate limited")

// MarkTransmitted records, durably, that the whole message of a claimed
// entry was written and only the final "." remains: from the moment it
// is sent the desk may accept the message.
func (s *Store) MarkTransmitted(id ID, now time.Time) error {
	_, err := s.transition(id, "mark transmitted", from(OutboxSending), func(_ *bbolt.Tx, e *OutboxEntry) error {
		e.Transmitted, e.Updated = true, now
		return nil
	})
	return err
}

// Transaction is the outcome of one SMTP transaction of a delivery.
type Transaction struct {
	// Accepted took the message; Rejected refused it permanently, with
	// the reply.
	Accepted []string
	Rejected map[string]string
	// Reply is the server's final answer.
	Reply string
	// Attempt, when set, is the transaction's row in the entry's history
	// (host, address, outcome, the server's answer); At and Node default
	// to now and this node.
	Attempt *Attempt
}

// RecordTransaction adds the outcome of one transaction to a claimed
// entry, and its row to the entry's history.
func (s *Store) RecordTransaction(id ID, now time.Time, t Transaction) (*OutboxEntry, error) {
	return s.transition(id, "record a transaction of", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		e.Transmitted, e.Updated = false, now
		e.Delivered = append(e.Delivered, t.Accepted...)
		rejected := make([]string, 0, len(t.Rejected))
		for a := range t.Rejected {
			rejected = append(rejected, a)
		}
		slices.Sort(rejected)
		for _, a := range rejected {
			if !slices.Contains(e.Rejected, a) {
				e.Rejected = append(e.Rejected, a)
			}
			e.LastError = a + ": " + t.Rejected[a]
		}
		if t.Reply != "" {
			e.Reply = t.Reply
		}
		if t.Attempt == nil {
			return nil
		}
		a := *t.Attempt
		if a.At.IsZero() {
			a.At = now
		}
		return s.addAttempt(tx, e, a)
	})
}

// row is a history row for a transition whose caller may have none
// (its failure is already recorded by the transactions' rows).
func (s *Store) row(tx *bbolt.Tx, e *OutboxEntry, now time.Time, a *Attempt) error {
	if a == nil {
		return nil
	}
	r := *a
	if r.At.IsZero() {
		r.At = now
	}
	return s.addAttempt(tx, e, r)
}

// MarkSent ends a claimed entry delivered (to some recipients at least).
// forget deletes the report, its evidence and the rendered message in the
// same transaction (channels whose uses lack store).
func (s *Store) MarkSent(id ID, now time.Time, lastErr string, forget bool) (*OutboxEntry, error) {
	return s.transition(id, "mark sent", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		e.Status, e.SentAt, e.Updated = OutboxSent, now, now
		e.NextAttempt, e.LeaseUntil, e.Transmitted, e.Reason = time.Time{}, time.Time{}, false, ""
		if lastErr != "" {
			e.LastError = lastErr
		}
		if len(e.Rejected) > 0 {
			e.Reason = "some recipients refused the report: " + strings.Join(e.Rejected, ", ")
		}
		if err := countSentTx(tx, e.Channel, now); err != nil {
			return err
		}
		if forget {
			e.DataDeleted = true
			return ForgetReportTx(tx, e.ID)
		}
		return nil
	})
}

// GiveUp ends a claimed entry failed: refused permanently, or still
// failing after reporter.retry.give_up_after. row, when not nil, is added
// to the entry's history (nil when the transactions' rows already say
// what failed).
func (s *Store) GiveUp(id ID, now time.Time, lastErr, reason string, row *Attempt) (*OutboxEntry, error) {
	return s.transition(id, "give up", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		e.Status, e.Reason, e.Updated = OutboxFailed, reason, now
		e.NextAttempt, e.LeaseUntil, e.Transmitted = time.Time{}, time.Time{}, false
		if lastErr != "" {
			e.LastError = lastErr
		}
		return s.row(tx, e, now, row)
	})
}

// Retry makes a claimed entry pending again, due at next; row is GiveUp's.
func (s *Store) Retry(id ID, now, next time.Time, lastErr, reason string, row *Attempt) (*OutboxEntry, error) {
	return s.transition(id, "retry", from(OutboxSending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		e.Status, e.NextAttempt, e.LeaseUntil, e.Updated = OutboxPending, next, time.Time{}, now
		e.Transmitted, e.Reason = false, reason
		e.Retries++
		if lastErr != "" {
			e.LastError = lastErr
		}
		return s.row(tx, e, now, row)
	})
}

// Cancel stops a pending entry from being sent. An entry being sent
// cannot be cancelled (its delivery may be past the point of no return).
func (s *Store) Cancel(id ID, now time.Time, reason string) (*OutboxEntry, error) {
	return s.transition(id, "cancel", from(OutboxPending), func(tx *bbolt.Tx, e *OutboxEntry) error {
		e.Status, e.Reason, e.Updated = OutboxCancelled, reason, now
		e.NextAttempt = time.Time{}
		return s.addAttempt(tx, e, Attempt{At: now, Outcome: AttemptCancelled, Detail: reason})
	})
}

// Requeue makes an entry pending and due at now, on an operator's
// request: a failed one (recipients that refused it are tried again), a
// withheld one (policy and contact are evaluated again), a dry-run one
// (sent if the reporter is enabled now), a cancelled one, or a pending
// one waiting for a retry. reporter.retry.give_up_after counts from now.
// A sent, duplicate or sending entry cannot be requeued.
func (s *Store) Requeue(id ID, now time.Time, reason string) (*OutboxEntry, error) {
	return s.transition(id, "requeue", from(OutboxPending, OutboxFailed, OutboxWithheld, OutboxDryRun, OutboxCancelled), func(tx *bbolt.Tx, e *OutboxEntry) error {
		if e.Status == OutboxFailed {
			e.Rejected = nil
		}
		was := e.Status
		e.Status, e.NextAttempt, e.Requeued, e.Updated, e.Reason = OutboxPending, now, now, now, reason
		return s.addAttempt(tx, e, Attempt{At: now, Outcome: AttemptRequeued, Detail: fmt.Sprintf("was %s: %s", was, reason)})
	})
}
