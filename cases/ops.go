package cases

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// An operator's action on a case holds on every node of a cluster: Act
// publishes it (ops.Case) and each node makes the same change to its own
// case of the same key (each node has its own id for it) at the time the
// operator acted. The side effects stay once cluster-wide: a restrict or
// unrestrict webhook call is claimed (RestrictClaims) by the node that
// makes it; an operator's notification is sent by the node that was
// asked, after the action was acknowledged, and the others record it as
// sent by that node.

// SetReplicator makes Act change the case on every node of a cluster,
// this one being node. Call it before serving.
func (m *Manager) SetReplicator(r ops.Replicator, node string) { m.ops, m.node = r, node }

func (m *Manager) actEverywhere(ctx context.Context, set *settings, cs *store.Case, action, by, reason string, now time.Time) (*store.Case, error) {
	op := &ops.Op{Kind: ops.Case, At: now, By: by, Reason: reason, CaseKey: cs.Key, CaseFirstSeen: cs.FirstSeen, Action: action}
	if err := m.ops.Replicate(ctx, op); err != nil {
		if errors.Is(err, ops.ErrSkip) {
			// The case changed between the check and the apply.
			return nil, fmt.Errorf("%w: %w", ErrConflict, err)
		}
		return nil, err
	}
	cur, err := m.st.GetCase(cs.ID)
	if err != nil {
		return nil, err
	}
	if action != "notify" {
		return cur, nil // ApplyOp changed it, here as everywhere
	}
	out, err := m.notifyDue(ctx, set, cur, now, by, reason, true)
	if err != nil {
		return nil, err
	}
	m.changed(out)
	m.Wake()
	return out, nil
}

// maxCatchUp bounds the batches of reports ApplyOp adds to cases first
// when the case of an action is not on this node yet.
const maxCatchUp = 64

// ApplyOp makes the change of an operator's case action (ops.Case), made
// on any node, on this node's case of the same key. The reports that
// made the case precede the action in the stream, but this node's worker
// may not have added them to cases yet: it does so first. An action
// that does not apply here (the case is not there, or its state does
// not allow it) is skipped with ops.ErrSkip.
func (m *Manager) ApplyOp(ctx context.Context, op *ops.Op) error {
	if m == nil {
		return fmt.Errorf("%w: cases are not running on this node", ops.ErrSkip)
	}
	cs, err := m.st.OpenCase(op.CaseKey)
	var stepErr error
	for i := 0; errors.Is(err, store.ErrNotFound) && i < maxCatchUp; i++ {
		var more bool
		if more, stepErr = m.Step(ctx); stepErr != nil {
			// The subscriber lookup may be down for long: the stream
			// must not wait for it, so the action is skipped here.
			break
		}
		cs, err = m.st.OpenCase(op.CaseKey)
		if !more {
			break
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		if stepErr != nil {
			return fmt.Errorf("%w: no open case of the action's key (adding reports to cases failed: %w)", ops.ErrSkip, stepErr)
		}
		return fmt.Errorf("%w: no open case of the action's key", ops.ErrSkip)
	}
	if err != nil {
		return err
	}
	if cs.FirstSeen.After(op.CaseFirstSeen) {
		return fmt.Errorf("%w: the open case of the key is a later one", ops.ErrSkip)
	}
	set := m.s()
	if err := allowed(set, cs, op.Action); err != nil {
		return fmt.Errorf("%w: %w", ops.ErrSkip, err)
	}
	var out *store.Case
	switch {
	case op.Action != "notify":
		out, err = m.change(cs, op.Action, op.By, op.Reason, op.At)
	case op.Node == m.node:
		return nil // the asked node sends it (actEverywhere)
	default:
		out, err = m.notifiedByOperator(set, cs, op)
	}
	if err != nil {
		return err
	}
	m.changed(out)
	m.Wake()
	return nil
}

// notifiedByOperator records on cs the notification an operator had node
// op.Node send, as notifyDue records its own.
func (m *Manager) notifiedByOperator(set *settings, cs *store.Case, op *ops.Op) (*store.Case, error) {
	total := cs.Complaints + cs.TrapHits
	k := min(total-cs.NotifiedUpTo, len(cs.Reports))
	if k <= 0 {
		k = min(len(cs.Reports), 1)
	}
	dry := !set.cfg.Subscribers.Notify.Enabled || m.opt.Mailer == nil
	result := "sent by cluster node " + op.Node
	if dry {
		result = "dry run on cluster node " + op.Node
	}
	reason := op.Reason
	if reason == "" {
		reason = fmt.Sprintf("notified %s of %d report(s) by cluster node %s", cs.Email, k, op.Node)
	}
	return m.st.UpdateCase(cs.ID, func(c *store.Case) error {
		c.Notifications = append(c.Notifications, store.Delivery{At: op.At, To: c.Email, Reports: k, DryRun: dry, Result: result})
		c.Notifications = lastN(c.Notifications, maxNotifications)
		c.NotifiedUpTo = max(c.NotifiedUpTo, total)
		c.NotifyFailures, c.NotifyRetryAt = 0, time.Time{}
		if op.At.After(c.LastNotified) {
			c.LastNotified = op.At
		}
		if c.State == store.CaseOpen {
			transition(c, store.CaseNotified, op.By, reason, op.At)
		}
		c.Updated = op.At
		return nil
	})
}
