package reporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// SetReplicator makes Retry requeue the entry on every node of a
// cluster: the retry travels through the stream (ops.Retry) and each
// node requeues its copy at the same time (ApplyOp). The claims then
// see one requeued report everywhere (claimed from that time on), so
// one node sends it. Call it before Run.
func (r *Reporter) SetReplicator(o ops.Replicator) { r.ops = o }

// requeueFrom are the statuses store.Requeue takes an entry from.
var requeueFrom = []store.OutboxStatus{store.OutboxPending, store.OutboxFailed, store.OutboxWithheld, store.OutboxDryRun, store.OutboxCancelled}

// Retry requeues outbox entry id now (store.Requeue), on every node of a
// cluster (SetReplicator). Errors as store.Requeue's; in a cluster one
// wrapping store.ErrCommit means that no node requeued it.
func (r *Reporter) Retry(ctx context.Context, id store.ID, now time.Time, reason string) (*store.OutboxEntry, error) {
	if r.ops == nil {
		return r.st.Requeue(id, now, reason)
	}
	e, err := r.st.GetOutbox(id)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(requeueFrom, e.Status) {
		return nil, &store.TransitionError{ID: id, Op: "requeue", From: e.Status}
	}
	op := &ops.Op{Kind: ops.Retry, At: now.UTC(), Reason: reason, Target: id}
	if err := r.ops.Replicate(ctx, op); err != nil {
		return nil, err // a TransitionError when it changed since the check
	}
	return r.st.GetOutbox(id)
}

// ApplyOp requeues the entry of an operator's retry (ops.Retry) made on
// any node, at the time it was made there. An entry this node does not
// hold, or holds in a state the retry does not apply to (sent here), is
// skipped.
func (r *Reporter) ApplyOp(_ context.Context, op *ops.Op) error {
	if r == nil {
		return fmt.Errorf("%w: no reporter on this node", ops.ErrSkip)
	}
	_, err := r.st.Requeue(op.Target, op.At, op.Reason)
	var te *store.TransitionError
	if errors.Is(err, store.ErrNotFound) || errors.As(err, &te) {
		return errors.Join(ops.ErrSkip, err)
	}
	if err != nil {
		return err
	}
	r.Wake()
	return nil
}
