package arf

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Action is what xarfd does with a parsed message.
type Action string

const (
	// ActionReport: an abuse complaint; it becomes a XARF report and is
	// reported where the channel's policy allows.
	ActionReport Action = "report"
	// ActionRetract: the recipient says the message was not spam (RFC
	// 6430 not-spam); it withdraws an earlier complaint about it.
	ActionRetract Action = "retract"
	// ActionQuarantine: stored with the reason, never reported.
	ActionQuarantine Action = "quarantine"
)

// Disposition is the decision for one parsed message and why.
type Disposition struct {
	Action Action
	// FeedbackType is the type the decision rests on: the Feedback-Type
	// field, else the inferred one (JMRP, a DMARC forensic Subject); ""
	// when the report states none.
	FeedbackType string
	// Reason says why in words an operator reads (empty for a report).
	Reason string
}

// Disposition classifies r by its feedback type. The table (also in
// docs/reporting.md):
//
//	abuse, fraud, virus       report (RFC 5965)
//	missing                   report, as abuse (a report that means to be one)
//	not-spam                  retract the complaint it refers to (RFC 6430)
//	auth-failure, dmarc       quarantine: an authentication failure report
//	                          (RFC 6591) says a check failed, not that the
//	                          message is abuse
//	opt-out, opt-out-list,    quarantine: not a complaint (pre-RFC drafts)
//	miscategorized
//	other, xarf, unknown      quarantine: no abuse type to report
//
// Messages that are not reports (ClassNotReport) are quarantined with
// Parse's reason.
func (r *Report) Disposition() Disposition {
	if r.Class == ClassNotReport {
		return Disposition{Action: ActionQuarantine, Reason: r.Reason}
	}
	ft := r.FeedbackType
	if ft == "" {
		if v, _ := r.InferredValues("feedback-type"); len(v) > 0 {
			ft = strings.ToLower(v[0])
		}
	}
	d := Disposition{Action: ActionQuarantine, FeedbackType: ft}
	switch ft {
	case "abuse", "fraud", "virus", "":
		d.Action = ActionReport
	case "not-spam":
		d.Action = ActionRetract
		d.Reason = "feedback-type not-spam (RFC 6430): the recipient says the message is not spam, which retracts an earlier complaint about it"
	case "auth-failure", "dmarc":
		d.Reason = "feedback-type " + ft + " (RFC 6591): an authentication failure report says the message failed an SPF, DKIM or DMARC check, not that it is abuse; stored, never reported as spam"
	case "opt-out", "opt-out-list":
		d.Reason = "feedback-type " + ft + ": an unsubscribe request, not an abuse complaint; stored, not reported"
	case "miscategorized":
		d.Reason = "feedback-type miscategorized: the recipient says the message was filed in the wrong folder, not that it is abuse; stored, not reported"
	case "other":
		d.Reason = "feedback-type other (RFC 5965): the report does not say what kind of abuse it alleges; stored for review, not reported"
	case "xarf":
		d.Reason = "feedback-type xarf: an XARF report carried as ARF, not a complaint about a message; stored for review, not reported (submit XARF documents to the API instead)"
	default:
		d.Reason = fmt.Sprintf("unknown feedback-type %q; stored for review, not reported", boundType(ft))
	}
	return d
}

// boundType keeps a hostile Feedback-Type from filling the reason.
func boundType(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if utf8.RuneCountInString(s) <= 64 {
		return s
	}
	n := 0
	for i := range s {
		if n == 64 {
			return s[:i] + "..."
		}
		n++
	}
	return s
}
