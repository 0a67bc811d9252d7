package ingest

import (
	"bytes"
	"context"
	"errors"

	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/redact"
	"github.com/xarfd/xarfd/store"
)

// Errors of Reprocess besides the store's (store.ErrNotFound,
// store.ErrNotQuarantined, store.ErrUnreadableQuarantine).
var (
	// ErrWithheld: the message's body was not stored (its redaction
	// could not be guaranteed), so there is nothing to run again.
	ErrWithheld = errors.New("ingest: the message's body was withheld, not stored: nothing to reprocess")
	// ErrNoChannel: the message's channel is no longer configured.
	ErrNoChannel = errors.New("ingest: the message's channel is not configured any more")
	// ErrUnredacted: the channel redacts now, but the message was stored
	// before it did. Its bytes are not redacted, and redacting them now
	// would replace the evidence; it is left as it is.
	ErrUnredacted = errors.New("ingest: the channel redacts now, but the message was stored unredacted before it did")
)

// redactedMark starts every message the redactor wrote: the header it
// puts first.
var redactedMark = []byte(redact.HeaderName + ": ")

// Reprocess runs the stored bytes of quarantined message id through the
// conversion path of its channel again (after a parser fix, or a change
// of the channel's trusted relays) and stores the outcome under the same
// id in one transaction: a report, with its outbox entry when the channel
// reports (created now, so that give_up_after counts from now), or the
// message stays quarantined with the new reason.
//
// The bytes are the stored ones, already redacted where the channel
// redacted them; they are not redacted again (that would turn pseudonyms
// into pseudonyms of pseudonyms) and are stored unchanged, and the
// envelope is the stored one, whose recipients are pseudonyms there.
// Bytes that the redactor wrote are converted as for a channel that
// redacts recipients even if the channel no longer does, so that no
// placeholder becomes smtp_to; bytes stored unredacted in a channel that
// redacts now are refused (ErrUnredacted). A report made here reaches
// OnReport like any other.
func (in *Ingester) Reprocess(id store.ID) (Result, error) {
	_, stored, raw, err := in.store.Quarantined(id)
	if err != nil {
		return Result{}, err
	}
	if stored.Withheld || raw == nil {
		return Result{}, ErrWithheld
	}
	ch := in.cfg.Channel(stored.Channel)
	if ch == nil {
		return Result{}, ErrNoChannel
	}
	wasRedacted := bytes.HasPrefix(raw, redactedMark)
	if ch.Redact.Enabled() && !wasRedacted {
		return Result{}, ErrUnredacted
	}
	if wasRedacted && !ch.Redact.Recipients {
		c := *ch
		c.Redact.Recipients = true
		ch = &c
	}
	m := *stored
	m.Status, m.Reason = store.StatusReceived, ""
	m.Envelope.Rcpts = append([]string(nil), stored.Envelope.Rcpts...)
	if m.Envelope.ReceivedAt.IsZero() {
		m.Envelope.ReceivedAt = store.IDTime(id).UTC() // the arrival, by the id
	}
	res := Result{ID: id}
	e := in.process(Delivery{Channel: ch, Rcpts: m.Envelope.Rcpts, stored: true}, &m, raw, &res)
	if !bytes.Equal(e.Raw, raw) {
		// process stores the bytes it was given when it does not redact;
		// anything else must not replace the evidence.
		return Result{}, errors.New("ingest: reprocessing changed the stored bytes")
	}
	if e.Outbox != nil {
		e.Outbox.Created = in.now().UTC()
	}
	entries, results := []store.Entry{e}, []Result{res}
	if err := in.retract(entries, results); err != nil {
		return Result{}, err
	}
	res = results[0]
	res.retract = nil
	if r := in.replicator(); r != nil {
		// Every node stores this outcome (ApplyOp, which announces
		// its report on every node, this one included).
		op := &ops.Op{Kind: ops.Reprocess, At: in.now().UTC(), Target: id, Entry: &entries[0]}
		if err := r.Replicate(context.Background(), op); err != nil {
			return Result{}, err
		}
		in.opt.Metrics.Reprocessed(m.Channel, reprocessOutcome(&e))
		return res, nil
	}
	if err := in.store.ReplaceQuarantined(e, in.now().UTC()); err != nil {
		return Result{}, err
	}
	// Not a delivery: xarfd_messages_total counted the message once, as
	// quarantined, when it arrived (as the hourly counters keep it).
	in.opt.Metrics.Reprocessed(m.Channel, reprocessOutcome(&e))
	if e.Report != nil && in.opt.OnReport != nil {
		in.opt.OnReport(e.Report)
	}
	return res, nil
}

func reprocessOutcome(e *store.Entry) string {
	if e.Report != nil {
		return metrics.OutcomeReport
	}
	return metrics.OutcomeQuarantine
}
