package ingest

import (
	"errors"
	"fmt"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/xarf"
)

// retraction is what a not-spam feedback report (RFC 6430) asks of the
// store: withdraw the complaint of the same channel about the same
// message. nil for anything else.
func retraction(ch *config.Channel, m *store.Message, parsed *arf.Report) *store.Retraction {
	if ch.Kind != config.KindARF || parsed == nil || parsed.Disposition().Action != arf.ActionRetract {
		return nil
	}
	r := &store.Retraction{ID: m.ID, Channel: ch.Name, MessageID: xarf.ReportedMessageID(parsed)}
	if parsed.Origin != nil {
		r.SourceIP = parsed.Origin.IP
	}
	return r
}

// retract withdraws what the not-spam reports among entries retract and
// writes the outcome into their quarantine reason, before they are
// stored: the retraction is recorded with what it did. An error (the
// store failed) means nothing of this message may be acknowledged.
func (in *Ingester) retract(entries []store.Entry, res []Result) error {
	for i := range res {
		r := res[i].retract
		if r == nil {
			continue
		}
		reason, err := in.retractOne(r)
		if err != nil {
			return fmt.Errorf("withdrawing the complaint a not-spam report retracts: %w", err)
		}
		entries[i].Message.Reason, res[i].Reason = reason, reason
		entries[i].Retract = r // the other nodes of a cluster withdraw it too
	}
	return nil
}

func (in *Ingester) retractOne(r *store.Retraction) (string, error) {
	const what = "feedback-type not-spam (RFC 6430): a retraction"
	out, err := in.store.Retract(*r, in.now().UTC())
	switch {
	case errors.Is(err, store.ErrNoMessageID):
		return what + ", but the reported message has no Message-ID to find the complaint by; nothing withdrawn", nil
	case err != nil:
		return "", err
	case out.Complaint == (store.ID{}):
		return fmt.Sprintf("%s of a complaint not stored in channel %s (no report about a message with this Message-ID); nothing withdrawn", what, r.Channel), nil
	case out.Withdrawn:
		return fmt.Sprintf("%s of complaint %s: its pending report was withdrawn", what, out.Complaint), nil
	case out.Status == store.OutboxWithdrawn:
		return fmt.Sprintf("%s of complaint %s, withdrawn already", what, out.Complaint), nil
	case out.Status == "":
		return fmt.Sprintf("%s of complaint %s, which was never queued for reporting", what, out.Complaint), nil
	default:
		return fmt.Sprintf("%s of complaint %s: its report is %s already, nothing withdrawn", what, out.Complaint, out.Status), nil
	}
}
