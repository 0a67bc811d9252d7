package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/xarf"
)

// Validator checks a XARF document against the schema and the rules the
// schema cannot express, returning every reason it is invalid.
type Validator interface {
	Validate(doc []byte) []string
}

// InvalidError rejects a submitted document; Reasons are safe to show to
// the submitter (they describe the submitter's own document).
type InvalidError struct{ Reasons []string }

func (e *InvalidError) Error() string {
	return "invalid XARF document: " + strings.Join(e.Reasons, "; ")
}

// SubmitXARF stores a XARF v4 document submitted over HTTP as a report of
// ch, after validating it. The document is stored as submitted, except
// that report_id is replaced by the id xarfd assigns (time-ordered, unique
// in this store), which the caller returns to the submitter. A redacting
// channel cannot accept
// documents: xarfd cannot know which of their fields hold recipient data.
func (in *Ingester) SubmitXARF(ch *config.Channel, doc []byte) (store.ID, error) {
	if in.opt.Validator == nil {
		return store.ID{}, fmt.Errorf("no XARF validator configured")
	}
	if ch.Redact.Enabled() {
		return store.ID{}, &InvalidError{Reasons: []string{"channel " + ch.Name + " redacts recipient data; submit the message (POST .../messages) instead of a report"}}
	}
	if reasons := in.opt.Validator.Validate(doc); len(reasons) > 0 {
		return store.ID{}, &InvalidError{Reasons: reasons}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(doc, &fields); err != nil {
		return store.ID{}, &InvalidError{Reasons: []string{"not a JSON object: " + err.Error()}}
	}
	id, err := store.NewID()
	if err != nil {
		return store.ID{}, fmt.Errorf("making report id: %w", err)
	}
	fields["report_id"], _ = json.Marshal(id.String())
	out, err := json.Marshal(fields)
	if err != nil {
		return store.ID{}, fmt.Errorf("encoding report: %w", err)
	}
	rep := &store.Report{ID: id, Channel: ch.Name, Via: "http", XARF: out}
	var src string
	if json.Unmarshal(fields["source_identifier"], &src) == nil {
		if a, err := netip.ParseAddr(src); err == nil {
			rep.SourceIP = a.Unmap()
		}
	}
	e := store.Entry{Report: rep}
	if ch.Has(config.UseReport) {
		e.Outbox = &store.OutboxEntry{ID: id, Channel: ch.Name, Status: store.OutboxPending, Created: in.now().UTC()}
	}
	stored, err := in.commit([]store.Entry{e})
	if err != nil {
		in.opt.Metrics.Message(ch.Name, metrics.OutcomeError)
		return store.ID{}, fmt.Errorf("storing report: %w", err)
	}
	in.opt.Metrics.Message(ch.Name, metrics.OutcomeReport)
	if stored[0] && in.opt.OnReport != nil {
		in.opt.OnReport(rep)
	}
	return id, nil
}

// XARFValidator checks documents with v: the official schema, then the
// rules it cannot express (xarf.Validator.Check).
func XARFValidator(v *xarf.Validator) Validator { return xarfValidator{v} }

type xarfValidator struct{ v *xarf.Validator }

func (x xarfValidator) Validate(doc []byte) []string {
	err := x.v.Check(doc)
	if err == nil {
		return nil
	}
	var ve *xarf.ValidationError
	if errors.As(err, &ve) {
		return ve.Reasons
	}
	return []string{err.Error()}
}
