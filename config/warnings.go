package config

import (
	"fmt"
	"strings"
)

// Warnings lists what a valid configuration does that an operator may
// not mean: old key names still read (with their line), and channels
// whose reports carry recipient data outside. check-config prints them
// (exit status unchanged) and serve logs them. Each names the file and
// the key.
func (c *Config) Warnings() []string {
	out := append([]string(nil), c.renamed...)
	for i := range c.Channels {
		ch := &c.Channels[i]
		if !ch.Has(UseReport) || ch.Redact.Recipients {
			continue
		}
		to := "the abuse contact of the origin network"
		if len(ch.ReportTo.Partners) > 0 {
			to = "the partners in report_to (" + strings.Join(ch.ReportTo.Partners, ", ") + ")"
		}
		what := "recipient addresses"
		if ch.Redact.Enabled() {
			what = "recipient addresses outside redact.addresses and redact.domains"
		}
		var where string
		switch ch.Kind {
		case KindARF:
			where = "the complaint's Original-Rcpt-To, the reported message's To and Cc, and smtp_to"
		default:
			where = "the trap address as smtp_to and in the reported message's header"
		}
		verb := "are sent"
		if !c.Reporter.Enabled {
			verb = "will be sent, once reporter.enabled is true,"
		}
		out = append(out, fmt.Sprintf("%s: channels[%d].redact.recipients: channel %s uses report without redacting recipients: %s (%s) %s to %s; set redact.recipients: true to keep them in",
			c.Source, i, ch.Name, what, where, verb, to))
	}
	return out
}
