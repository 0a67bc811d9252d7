package intel

import (
	"context"
	"errors"
	"fmt"

	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// SetReplicator makes Delist act on every node of a cluster: the
// delisting travels through the replicated stream and each node applies
// it (ApplyOp) with the same time, reason and operator, so that every
// node's lists and DNS zones stop listing the indicator alike. Call it
// before serving.
func (s *Service) SetReplicator(r ops.Replicator) { s.ops = r }

func (s *Service) delistEverywhere(k Kind, value, reason, by string) (*store.IntelIndicator, error) {
	// What this node does not hold is not found here, as on one node,
	// and nothing is published.
	if _, err := s.st.IntelGet(string(k), value); err != nil {
		return nil, err
	}
	op := &ops.Op{Kind: ops.Delist, At: s.now().UTC(), By: by, Reason: reason, IndicatorKind: string(k), Value: value}
	if err := s.ops.Replicate(context.Background(), op); err != nil {
		return nil, err
	}
	return s.st.IntelGet(string(k), value)
}

// maxCatchUp bounds the mining batches a delisting waits for when its
// indicator is not mined on this node yet.
const maxCatchUp = 64

// ApplyOp applies a delisting made on any node of the cluster (kind
// ops.Delist) on this one, at the time it was made there. The reports
// that made the indicator precede the delisting in the stream and are in
// this node's store, but its worker may not have mined them yet: it
// mines them first. A nil Service (intel is off on this node) skips it.
func (s *Service) ApplyOp(_ context.Context, op *ops.Op) error {
	if s == nil {
		return fmt.Errorf("%w: intel is not running on this node", ops.ErrSkip)
	}
	k, ok := ParseKind(op.IndicatorKind)
	if !ok {
		return fmt.Errorf("%w: unknown indicator kind %q", ops.ErrSkip, op.IndicatorKind)
	}
	d := store.IntelDelist{At: op.At, Reason: op.Reason, By: op.By}
	_, err := s.delist(k, op.Value, d)
	for i := 0; errors.Is(err, store.ErrNotFound) && i < maxCatchUp; i++ {
		n, merr := s.Mine()
		if merr != nil {
			return fmt.Errorf("mining reports before a delisting: %w", merr)
		}
		if n == 0 {
			break
		}
		_, err = s.delist(k, op.Value, d)
	}
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: indicator %s %s: %w", ops.ErrSkip, k, op.Value, err)
	}
	return err
}
