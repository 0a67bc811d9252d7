package store

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/bbolt"
)

// Batches of transitions. Each transition of outbox_state.go is one
// durable commit; a reporter that claims, de-duplicates and dry-runs each
// report one by one makes several commits per report besides the one that
// stored it, and each costs two fdatasync. ClaimBatch and Settle record
// many entries' transitions in one transaction instead. Each step is the
// very transition of the method of the same name, checked the same way;
// a step that its entry's status refuses changes nothing and is refused
// alone, in its StepResult, while the others are recorded. A store error
// fails the whole batch, and then nothing of it is recorded: a claimed
// entry stays claimed until its lease ends, and is taken again then.

// Step is one checked transition of an outbox entry, for Settle. Build it
// with ClaimStep, WithholdStep, DedupStep, SetContactStep or DryRunStep.
type Step struct {
	ID    ID
	op    string
	check func(*OutboxEntry) (bool, string)
	apply func(*bbolt.Tx, *OutboxEntry, *StepResult) error
}

// Op names the transition ("claim", "de-duplicate", …) for messages.
func (st Step) Op() string { return st.op }

// StepResult is what one step of a batch did.
type StepResult struct {
	// Entry is the entry after the step; nil when the step was not
	// applied.
	Entry *OutboxEntry
	// Err says why the step was not applied: a *TransitionError (the
	// entry's status refused it), ErrNotFound, an entry that cannot be
	// decoded, or ErrSkipped.
	Err error
	// Duplicate is set by a DedupStep that found the same incident
	// recorded by Primary (the entry is now its duplicate).
	Duplicate bool
	Primary   ID

	// row, when an apply sets it, is added to the entry's history in the
	// same transaction.
	row *Attempt
}

// ErrSkipped is the Err of a step that Settle did not try: an earlier
// step of the same entry in its chain was refused or ended the claim.
var ErrSkipped = errors.New("outbox step skipped: an earlier step of the entry was refused or ended it")

// run applies the step to its entry inside tx. A refusal is returned in
// the result, having changed nothing; an error of the store (which may
// have left tx half written) is returned as the error, and the whole
// transaction must be abandoned.
func (st *Step) run(tx *bbolt.Tx, node string) (StepResult, error) {
	e, err := GetOutboxTx(tx, st.ID)
	if err != nil {
		return StepResult{Err: err}, nil
	}
	if ok, why := st.check(e); !ok {
		return StepResult{Err: &TransitionError{ID: st.ID, Op: st.op, From: e.Status, Why: why}}, nil
	}
	var r StepResult
	if err := st.apply(tx, e, &r); err != nil {
		return StepResult{}, err
	}
	if err := putOutbox(tx, e); err != nil {
		return StepResult{}, err
	}
	if r.row != nil {
		if err := addAttemptTx(tx, e.ID, node, *r.row); err != nil {
			return StepResult{}, err
		}
		r.row = nil
	}
	r.Entry = e
	return r, nil
}

// settleOne records one step in a transaction of its own: the single
// transitions of outbox_state.go. A refusal is the error.
func (s *Store) settleOne(st Step) (StepResult, error) {
	var r StepResult
	err := s.Commit(func(tx *bbolt.Tx) error {
		var err error
		if r, err = st.run(tx, s.node); err != nil {
			return err
		}
		return r.Err
	})
	return r, err
}

// Settle records chains of steps in one durable transaction. A chain is
// the steps of one entry, applied in order, each checked as its single
// transition would be; a step that is refused, or after which the entry
// is no longer sending (withheld, a duplicate, dry-run), ends its chain
// and the rest get ErrSkipped. Refusals are per step: the other chains
// are recorded. The results are in the shape of chains. An error is the
// store's, and then nothing was recorded.
func (s *Store) Settle(chains [][]Step) ([][]StepResult, error) {
	for _, c := range chains {
		for _, st := range c {
			if st.ID != c[0].ID {
				return nil, fmt.Errorf("settling outbox entries: a chain holds steps of %s and %s", c[0].ID, st.ID)
			}
		}
	}
	var out [][]StepResult
	err := s.Commit(func(tx *bbolt.Tx) error {
		out = make([][]StepResult, len(chains))
		for i, c := range chains {
			out[i] = make([]StepResult, len(c))
			ended := false
			for j := range c {
				if ended {
					out[i][j] = StepResult{Err: ErrSkipped}
					continue
				}
				r, err := c[j].run(tx, s.node)
				if err != nil {
					return fmt.Errorf("settling outbox entry %s (%s): %w", c[j].ID, c[j].op, err)
				}
				out[i][j] = r
				ended = r.Err != nil || r.Entry.Status != OutboxSending
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ClaimBatch claims the entries ids in one durable transaction, each as
// Claim would: a result's Entry is the claimed entry, or its Err says why
// it could not be claimed (not due, claimed by someone else, gone). The
// lease is durable before ClaimBatch returns, so the caller may start
// external work on every claimed entry.
func (s *Store) ClaimBatch(ids []ID, now time.Time, lease time.Duration) ([]StepResult, error) {
	chains := make([][]Step, len(ids))
	for i, id := range ids {
		chains[i] = []Step{ClaimStep(id, now, lease)}
	}
	res, err := s.Settle(chains)
	if err != nil {
		return nil, err
	}
	out := make([]StepResult, len(res))
	for i := range res {
		out[i] = res[i][0]
	}
	return out, nil
}

// ClaimStep is Claim as a step.
func ClaimStep(id ID, now time.Time, lease time.Duration) Step {
	return Step{ID: id, op: "claim", check: func(e *OutboxEntry) (bool, string) {
		switch e.Status {
		case OutboxPending:
			if e.due().After(now) {
				return false, "not due until " + e.due().UTC().Format(time.RFC3339)
			}
			return true, ""
		case OutboxSending:
			if e.LeaseUntil.After(now) {
				return false, "claimed until " + e.LeaseUntil.UTC().Format(time.RFC3339)
			}
			return true, ""
		}
		return false, ""
	}, apply: func(_ *bbolt.Tx, e *OutboxEntry, r *StepResult) error {
		if e.Status == OutboxSending {
			interrupted(e)
			r.row = &Attempt{At: now, Outcome: AttemptInterrupted, Detail: "lease ran out: " + e.LastError}
		}
		e.Status, e.LeaseUntil, e.Updated = OutboxSending, now.Add(lease), now
		return nil
	}}
}

// WithholdStep is Withhold as a step.
func WithholdStep(id ID, now time.Time, reason string, src netip.Addr) Step {
	return Step{ID: id, op: "withhold", check: from(OutboxSending), apply: func(_ *bbolt.Tx, e *OutboxEntry, r *StepResult) error {
		e.Status, e.Reason, e.Updated = OutboxWithheld, reason, now
		r.row = &Attempt{At: now, Outcome: AttemptWithheld, Detail: reason}
		e.NextAttempt, e.LeaseUntil = time.Time{}, time.Time{}
		if src.IsValid() {
			e.SourceIP = src
		}
		return nil
	}}
}

// DedupStep is Dedup as a step: the result's Duplicate and Primary say
// what Dedup returns.
func DedupStep(id ID, now time.Time, src netip.Addr, fp string, window time.Duration) Step {
	return Step{ID: id, op: "de-duplicate", check: from(OutboxSending), apply: func(tx *bbolt.Tx, e *OutboxEntry, r *StepResult) error {
		e.SourceIP, e.Fingerprint, e.Updated = src, fp, now
		e.Count = max(e.Count, 1)
		p, isDup, err := DedupTx(tx, fp, id, now, window)
		if err != nil {
			return err
		}
		r.Primary, r.Duplicate = p, isDup
		if !isDup {
			return nil
		}
		pe, err := GetOutboxTx(tx, p)
		if err != nil {
			return err
		}
		pe.Count = max(pe.Count, 1) + 1
		pe.Updated = now
		if err := putOutbox(tx, pe); err != nil {
			return err
		}
		e.Status, e.DuplicateOf = OutboxDuplicate, p
		e.NextAttempt, e.LeaseUntil = time.Time{}, time.Time{}
		e.Reason = fmt.Sprintf("same source and message as report %s within %s: counted there", p, window)
		r.row = &Attempt{At: now, Outcome: AttemptDuplicate, Detail: e.Reason}
		return nil
	}}
}

// SetContactStep is SetContact as a step.
func SetContactStep(id ID, now time.Time, recipients []string, source string, dropped []string) Step {
	return Step{ID: id, op: "set the contact of", check: from(OutboxSending), apply: func(_ *bbolt.Tx, e *OutboxEntry, _ *StepResult) error {
		e.Recipients = recipients
		e.Contact = joinRecipients(recipients)
		e.ContactSource, e.Dropped = source, dropped
		e.Reason, e.Updated = "", now
		return nil
	}}
}

// DryRunStep is DryRun as a step.
func DryRunStep(id ID, now time.Time, m *RenderedMail, reason string) Step {
	return Step{ID: id, op: "dry-run", check: from(OutboxSending), apply: func(tx *bbolt.Tx, e *OutboxEntry, r *StepResult) error {
		e.Status, e.Reason, e.Updated = OutboxDryRun, reason, now
		r.row = &Attempt{At: now, Outcome: AttemptDryRun, Detail: reason}
		e.NextAttempt, e.LeaseUntil = time.Time{}, time.Time{}
		if m != nil {
			return setRendered(tx, e, m)
		}
		return nil
	}}
}
