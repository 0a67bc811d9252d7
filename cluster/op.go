package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// OpSubjectPrefix starts the subject of an operator's action on the
// stream (followed by its kind): a subject family of its own, so that a
// node tells actions from records before decoding, and an older node's
// stream gains it at the next start of a newer one (setup).
const OpSubjectPrefix = "xarfd.op."

// An op record carries one operator's action (ops.Op) to every node.
//
// Layout (version 1), integers as unsigned varints:
//
//	"XOP" 0x01                       magic and version
//	crc32c                           4 bytes big-endian, of all that follows
//	header                           length+1 and the ops.Op as JSON
//	entry                            length+1 (0 = absent) and a record
//	                                 (EncodeRecord) of the one entry a
//	                                 reprocess stored
//
// A decoder meeting another version, or a kind it does not know,
// refuses the action rather than guessing (logged, counted damaged).
const opVersion = 1

var opMagic = [4]byte{'X', 'O', 'P', opVersion}

// maxOpText bounds each text field of an action: reasons are bounded
// far lower by the API and the console.
const maxOpText = 8 << 10

// EncodeOp encodes op as an op record.
func EncodeOp(op *ops.Op) ([]byte, error) {
	if err := checkOp(op); err != nil {
		return nil, fmt.Errorf("encoding operator's action: %w", err)
	}
	h, err := json.Marshal(op)
	if err != nil {
		return nil, fmt.Errorf("encoding operator's action: %w", err)
	}
	var rec []byte
	if op.Entry != nil {
		if rec, err = EncodeRecord([]store.Entry{*op.Entry}); err != nil {
			return nil, fmt.Errorf("encoding operator's action: %w", err)
		}
	}
	b := make([]byte, 8, 8+2*binary.MaxVarintLen64+len(h)+len(rec))
	copy(b, opMagic[:])
	b = binary.AppendUvarint(b, uint64(len(h))+1)
	b = append(b, h...)
	if rec == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(rec))+1)
		b = append(b, rec...)
	}
	binary.BigEndian.PutUint32(b[4:8], crc32.Checksum(b[8:], crcTable))
	return b, nil
}

// DecodeOp decodes an op record. Its entry's byte fields alias b.
func DecodeOp(b []byte) (*ops.Op, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %d bytes", ErrRecord, len(b))
	}
	if [3]byte(b[:3]) != [3]byte(opMagic[:3]) {
		return nil, fmt.Errorf("%w: not an operator's action", ErrRecord)
	}
	if b[3] != opVersion {
		return nil, fmt.Errorf("%w: action version %d, this node reads %d (upgrade it)", ErrRecord, b[3], opVersion)
	}
	if sum := crc32.Checksum(b[8:], crcTable); sum != binary.BigEndian.Uint32(b[4:8]) {
		return nil, fmt.Errorf("%w: checksum does not hold", ErrRecord)
	}
	d := decoder{b: b[8:]}
	h, ok := d.field()
	rec, hasRec := d.field()
	if d.err == nil && !ok {
		d.err = errors.New("no header")
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRecord, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the action", ErrRecord, len(d.b))
	}
	op := new(ops.Op)
	if err := json.Unmarshal(h, op); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrRecord, err)
	}
	if hasRec {
		es, err := DecodeRecord(rec)
		if err != nil {
			return nil, fmt.Errorf("%w: entry: %w", ErrRecord, err)
		}
		if len(es) != 1 {
			return nil, fmt.Errorf("%w: %d entries, want 1", ErrRecord, len(es))
		}
		op.Entry = &es[0]
	}
	if err := checkOp(op); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRecord, err)
	}
	return op, nil
}

// checkOp says what is missing or wrong in op for its kind, so that an
// applier never meets an action it cannot make sense of.
func checkOp(op *ops.Op) error {
	if op.ID == "" || len(op.ID) > 64 || strings.ContainsAny(op.ID, " \t\r\n") {
		return errors.New("bad action id")
	}
	if !ops.Known(op.Kind) {
		return fmt.Errorf("unknown kind %q (upgrade this node)", truncate(string(op.Kind), 40))
	}
	if op.At.IsZero() {
		return errors.New("no time")
	}
	for _, s := range []string{op.Node, op.By, op.Reason, op.IndicatorKind, op.Value, op.CaseKey, op.Action} {
		if len(s) > maxOpText || !utf8.ValidString(s) {
			return errors.New("a text field is too long or not UTF-8")
		}
	}
	zero := store.ID{}
	switch op.Kind {
	case ops.Delist:
		if op.IndicatorKind == "" || op.Value == "" {
			return errors.New("delist without indicator")
		}
	case ops.Case:
		if op.CaseKey == "" || op.CaseFirstSeen.IsZero() || op.Action == "" {
			return errors.New("case action without case or action")
		}
	case ops.QuarantineDelete, ops.Retry:
		if op.Target == zero {
			return errors.New("no target")
		}
	case ops.Reprocess:
		e := op.Entry
		if op.Target == zero || e == nil || e.Message == nil || e.Message.ID != op.Target {
			return errors.New("reprocess without the entry of its target")
		}
	}
	if op.Entry != nil && op.Kind != ops.Reprocess {
		return errors.New("an entry in an action that carries none")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Replicate implements ops.Replicator: it publishes op on the stream and
// waits for the acknowledgement (cluster.publish_timeout, as Commit).
// Without it nothing is applied here and the error wraps ErrUnavailable
// (store.ErrCommit: the API answers 503). Then it waits until this
// node's consumer has applied op, in stream order after whatever other
// nodes published before it, and returns that apply's error; when the
// consumer lags more than cluster.publish_timeout behind, it applies op
// at once, out of the stream's order, rather than keep the operator
// waiting (the consumer then finds it applied).
func (n *Node) Replicate(ctx context.Context, op *ops.Op) error {
	if op.ID == "" {
		op.ID = ops.NewID()
	}
	op.Node = n.cfg.Node
	b, err := EncodeOp(op)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	n.waitMu.Lock()
	n.waiting[op.ID] = done
	n.waitMu.Unlock()
	defer func() {
		n.waitMu.Lock()
		delete(n.waiting, op.ID)
		n.waitMu.Unlock()
	}()
	timeout := n.cfg.PublishTimeout.D()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	ack, err := n.js.Publish(pctx, OpSubjectPrefix+string(op.Kind), b, jetstream.WithMsgID(op.ID), jetstream.WithExpectStream(StreamName))
	n.m.published(time.Since(start), err)
	if err != nil {
		return fmt.Errorf("publishing operator's action %s (%s): %w: %w", op.ID, op.Kind, ErrUnavailable, err)
	}
	if ack.Duplicate {
		// Published before within the duplicate window: the consumer
		// has met it or will; applying here is a no-op if it did.
		return n.applyOp(ctx, op)
	}
	// Applied here out of stream order, the action could meet a case
	// or an entry in another state than on the other nodes (an earlier
	// action not applied yet here) and the nodes would differ: wait for
	// the consumer as long as an HTTP answer may take, and only then
	// apply it at once.
	t := time.NewTimer(max(timeout, opApplyWait))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		n.log.Warn().Str("action", op.ID).Uint64("stream_seq", ack.Sequence).
			Msg("cluster: this node's consumer lags; the operator's action is applied here at once, before records it has not applied yet")
		return n.applyOp(ctx, op)
	case <-ctx.Done():
		// The caller is gone; the action is in the stream and the
		// consumer applies it in order.
		return nil
	}
}

// opApplyWait is the longest the asked node waits for its own consumer
// to reach an action it published (at least cluster.publish_timeout):
// under the HTTP server's 2-minute write timeout, far above a loaded
// node's consumer lag.
const opApplyWait = time.Minute

// settled hands the outcome of applying action id from the stream to a
// Replicate waiting for it on this node.
func (n *Node) settled(id string, err error) {
	n.waitMu.Lock()
	done := n.waiting[id]
	n.waitMu.Unlock()
	if done != nil {
		select {
		case done <- err:
		default:
		}
	}
}

// applyOp applies op on this node unless it was applied already, and
// marks it applied. One at a time: the node's own action may meet its
// copy from the stream while it is applied.
func (n *Node) applyOp(ctx context.Context, op *ops.Op) error {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	done, err := n.st.OpApplied(op.ID)
	if err != nil {
		return fmt.Errorf("reading whether action %s was applied: %w", op.ID, err)
	}
	if done {
		return nil
	}
	if n.ops == nil {
		return fmt.Errorf("%w: this node applies no operator's actions", ops.ErrSkip)
	}
	aerr := n.ops(ctx, op)
	if aerr != nil && !errors.Is(aerr, ops.ErrSkip) {
		return aerr // the store failed: applied again later
	}
	// A skipped action is marked too: it would skip again.
	if err := n.st.MarkOp(op.ID, time.Now()); err != nil {
		return fmt.Errorf("marking action %s applied: %w", op.ID, err)
	}
	return aerr
}

// applyOpMsg applies one op message of the stream; it reports false when
// the store failed and the message must come again (the caller naks it
// and what follows it, to keep the stream's order).
func (n *Node) applyOpMsg(ctx context.Context, m jetstream.Msg) bool {
	op, err := DecodeOp(m.Data())
	if err != nil {
		n.damaged(m, err)
		return true
	}
	err = n.applyOp(ctx, op)
	if err == nil || errors.Is(err, ops.ErrSkip) {
		n.settled(op.ID, err)
	}
	switch {
	case errors.Is(err, ops.ErrSkip):
		n.log.Warn().Err(err).Str("action", op.ID).Str("kind", string(op.Kind)).Str("from", op.Node).
			Msg("cluster: an operator's action does not apply on this node; skipped")
		n.m.appliedOp(resultSkipped)
	case err != nil:
		n.log.Error().Err(err).Str("action", op.ID).Msg("cluster: applying an operator's action failed; retrying")
		return false
	default:
		n.m.appliedOp(resultStored)
	}
	if err := m.Ack(); err != nil {
		n.log.Debug().Err(err).Msg("cluster: acknowledging an action")
	}
	return true
}

// damaged terminates a message that never decodes, logging it with its
// stream sequence.
func (n *Node) damaged(m jetstream.Msg, err error) {
	meta, _ := m.Metadata()
	ev := n.log.Error().Err(err).Str("subject", m.Subject())
	if meta != nil {
		ev = ev.Uint64("stream_seq", meta.Sequence.Stream)
	}
	ev.Msg("cluster: a record of the stream cannot be decoded; it is skipped on this node")
	n.m.applied(resultDamaged, 1)
	m.Term()
}

// isOp says whether a stream message is an operator's action.
func isOp(m jetstream.Msg) bool { return strings.HasPrefix(m.Subject(), OpSubjectPrefix) }

// opPruneInterval is how often a node forgets the actions it applied
// that the stream no longer holds.
const opPruneInterval = time.Hour

// pruneOps forgets the marks of actions older than the stream keeps
// (plus its duplicate window): they cannot come again.
func (n *Node) pruneOps() {
	if n.maxAge <= 0 {
		return
	}
	k, err := n.st.PruneOps(time.Now().Add(-n.maxAge - DuplicateWindow))
	if err != nil {
		n.log.Warn().Err(err).Msg("cluster: forgetting applied operators' actions the stream no longer holds")
		return
	}
	if k > 0 {
		n.log.Debug().Int("actions", k).Msg("cluster: forgot applied operators' actions the stream no longer holds")
	}
}
