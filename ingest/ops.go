package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// In a cluster an operator's delete or reprocess of a quarantined
// message holds on every node: it travels through the stream (the
// Replicator is then an ops.Replicator too) and each node applies it
// with ApplyOp. A reprocess carries its outcome, the entry that replaces
// the message, rather than asking every node to convert the message
// again: every node stores exactly what the asked node made, whatever
// parser version or configuration each runs.

// replicator is the Replicator as an ops.Replicator, or nil (a single
// node).
func (in *Ingester) replicator() ops.Replicator {
	r, _ := in.opt.Replicator.(ops.Replicator)
	return r
}

// DeleteQuarantined deletes quarantined message id, its bytes and its
// quarantine entry (store.DeleteQuarantined), on every node of a cluster.
// Errors as the store's; in a cluster one wrapping store.ErrCommit means
// that no node deleted it.
func (in *Ingester) DeleteQuarantined(id store.ID) error {
	r := in.replicator()
	if r == nil {
		return in.store.DeleteQuarantined(id)
	}
	if _, _, _, err := in.store.Quarantined(id); err != nil {
		return err
	}
	return r.Replicate(context.Background(), &ops.Op{Kind: ops.QuarantineDelete, At: in.now().UTC(), Target: id})
}

// ApplyOp returns the applier of the quarantine actions (ops.Reprocess,
// ops.QuarantineDelete) on a node's store st; onReport is told about a
// report a reprocess made, as of any report stored. A message that is
// not (or no longer) quarantined on this node skips the action.
func ApplyOp(st *store.Store, onReport func(*store.Report)) ops.Applier {
	return func(_ context.Context, op *ops.Op) error {
		var err error
		switch op.Kind {
		case ops.QuarantineDelete:
			err = st.DeleteQuarantined(op.Target)
		case ops.Reprocess:
			err = st.ReplaceQuarantined(*op.Entry, op.At)
		default:
			return fmt.Errorf("%w: not a quarantine action: %s", ops.ErrSkip, op.Kind)
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNotQuarantined) || errors.Is(err, store.ErrUnreadableQuarantine) {
			return errors.Join(ops.ErrSkip, err)
		}
		if err != nil || op.Kind != ops.Reprocess {
			return err
		}
		e := op.Entry
		if r := e.Retract; r != nil {
			// The asked node withdrew it before publishing; the others
			// do it now (on the asked node, a second time is a no-op).
			if _, err := st.Retract(*r, op.At); err != nil && !errors.Is(err, store.ErrNoMessageID) {
				return fmt.Errorf("withdrawing the complaint a reprocessed not-spam report retracts: %w", err)
			}
		}
		if e.Report != nil && onReport != nil {
			onReport(e.Report)
		}
		return nil
	}
}
