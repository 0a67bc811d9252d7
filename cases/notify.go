package cases

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// Mailer hands a notification to the outbound delivery reports use
// (smarthost or MX, DKIM). serve wires a deliver.SMTP (reporter/deliver) into it.
type Mailer interface {
	Send(ctx context.Context, from string, to []string, msg []byte) error
}

// DefaultTemplate is the text of a notification; subscribers.notify.
// template_file replaces it. Its data is NotifyData.
const DefaultTemplate = `Hello{{with .Subscriber.Name}} {{.}}{{end}},

a device on your connection sends spam.

{{.Org}} received {{len .Reports}} report{{if gt (len .Reports) 1}}s{{end}} about mail sent from your
connection ({{range $i, $ip := .IPs}}{{if $i}}, {{end}}{{$ip}}{{end}}):
{{range .Reports}}
  - {{.At.Format "2006-01-02 15:04:05 MST"}} from {{.IP}}{{if .Port}} port {{.Port}}{{end}}: {{.Kind}}{{end}}

What to do: check your computers, phones and other devices for malware,
change the passwords of your mail accounts, and make sure no device sends
mail it should not. The header of each reported message is attached,
without its recipients.

If this goes on, we may have to restrict your connection.

Case {{.CaseID}}. Reply to this message if you have questions.
--
{{.Org}} abuse desk <{{.Contact}}>
`

// NotifyData is what a notification template sees.
type NotifyData struct {
	Subscriber Subscriber
	CaseID     string
	// IPs are the case's addresses.
	IPs []string
	// Reports are those the mail covers (a digest since the last mail).
	Reports []NotifyReport
	// Complaints and TrapHits count the whole case.
	Complaints, TrapHits int
	FirstSeen, LastSeen  time.Time
	// Org and Contact are sender.org and sender.contact.
	Org, Contact string
}

// NotifyReport is one report in a notification.
type NotifyReport struct {
	At   time.Time
	IP   string
	Port int
	// Kind is "complaint" or "spam trap hit".
	Kind string
}

type notifyTemplate struct{ t *template.Template }

func loadTemplate(path string) (*notifyTemplate, error) {
	text := DefaultTemplate
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("subscribers.notify.template_file: %w", err)
		}
		text = string(b)
	}
	t, err := template.New("notify").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("subscribers.notify.template_file %s: %w", path, err)
	}
	return &notifyTemplate{t: t}, nil
}

// evidenceFields are the header fields of a reported message a
// subscriber is shown: what identifies the message, never a field that
// names a recipient (To, Cc, Delivered-To, Received's "for", ARF's
// Original-Rcpt-To) or the complainant. Return-Path and List-Unsubscribe
// are left out too: bulk senders encode the recipient in them (VERP,
// per-recipient unsubscribe links).
var evidenceFields = []string{"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID",
	"MIME-Version", "Content-Type", "X-Mailer", "User-Agent"}

// evidenceHeader returns the header of the message a report is about
// (the embedded message of a complaint, the trap mail itself), cut down
// to evidenceFields. The stored message is already redacted for a
// redacting channel; the cut keeps complainants' data of other channels
// out too.
func evidenceHeader(raw []byte) []byte {
	var h arf.Header
	if rep, err := arf.Parse(raw); err == nil && rep.Embedded != nil {
		h = rep.Embedded.Header
	} else if hh, err := arf.ParseHeader(raw); err == nil {
		h = hh
	}
	var b bytes.Buffer
	for _, f := range h {
		for _, name := range evidenceFields {
			if strings.EqualFold(f.Name, name) {
				fmt.Fprintf(&b, "%s: %s\r\n", f.Name, oneLine(f.Value))
			}
		}
	}
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// renderNotification builds the mail for the reports of cs after index
// from (digest).
func (m *Manager) renderNotification(set *settings, cs *store.Case, reps []store.CaseReport) ([]byte, error) {
	cfg := set.cfg
	d := NotifyData{
		Subscriber: Subscriber{ID: cs.SubscriberID, Email: cs.Email, Name: cs.Name},
		CaseID:     cs.ID.String(), Complaints: cs.Complaints, TrapHits: cs.TrapHits,
		FirstSeen: cs.FirstSeen, LastSeen: cs.LastSeen, Org: cfg.Sender.Org, Contact: cfg.Sender.Contact,
	}
	for _, ip := range cs.IPs {
		d.IPs = append(d.IPs, ip.String())
	}
	for _, r := range reps {
		kind := "complaint"
		if r.EvidenceSource == "spamtrap" {
			kind = "spam trap hit"
		}
		d.Reports = append(d.Reports, NotifyReport{At: r.At, IP: r.IP.String(), Port: r.Port, Kind: kind})
	}
	var text bytes.Buffer
	if err := set.tmpl.t.Execute(&text, d); err != nil {
		return nil, fmt.Errorf("rendering the notification: %w", err)
	}
	var rnd [12]byte
	rand.Read(rnd[:])
	boundary := "xarfd-" + hex.EncodeToString(rnd[:])
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", cfg.Subscribers.Notify.From)
	hdr("To", cs.Email)
	hdr("Subject", mime.QEncoding.Encode("utf-8", fmt.Sprintf("Abuse from your connection: %d report(s) (case %s)", len(reps), cs.ID)))
	hdr("Date", m.opt.Now().UTC().Format(time.RFC1123Z))
	hdr("Message-ID", fmt.Sprintf("<%s.%s@%s>", cs.ID, hex.EncodeToString(rnd[:6]), cfg.Hostname))
	hdr("Auto-Submitted", "auto-generated")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write(bytes.ReplaceAll(text.Bytes(), []byte("\n"), []byte("\r\n")))
	qp.Close()
	for _, r := range reps {
		raw, err := m.st.Raw(r.ID)
		if err != nil {
			continue // deleted by retention: the text still lists it
		}
		h := evidenceHeader(raw)
		if len(h) == 0 {
			continue
		}
		b.WriteString("\r\n--" + boundary + "\r\n")
		fmt.Fprintf(&b, "Content-Type: text/rfc822-headers\r\nContent-Disposition: attachment; filename=\"report-%s.txt\"\r\n\r\n", r.ID)
		b.Write(h)
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// notifyDue sends (or, in dry run, records) the digest of cs's reports
// not yet notified, when min_interval allows.
func (m *Manager) notifyDue(ctx context.Context, set *settings, cs *store.Case, now time.Time, by, reason string, force bool) (*store.Case, error) {
	n := &set.cfg.Subscribers.Notify
	total := cs.Complaints + cs.TrapHits
	if cs.Email == "" || cs.State == store.CaseResolved {
		if force {
			return nil, fmt.Errorf("%w: the case has no subscriber address to notify", ErrConflict)
		}
		return nil, nil
	}
	if !force && (total <= cs.NotifiedUpTo || (!cs.LastNotified.IsZero() && now.Sub(cs.LastNotified) < n.MinInterval.D()) ||
		now.Before(cs.NotifyRetryAt)) {
		return nil, nil
	}
	k := min(total-cs.NotifiedUpTo, len(cs.Reports))
	if k <= 0 {
		k = min(len(cs.Reports), 1) // a forced mail repeats the newest
	}
	reps := cs.Reports[len(cs.Reports)-k:]
	msg, err := m.renderNotification(set, cs, reps)
	if err != nil {
		return nil, err
	}
	dry := !n.Enabled || m.opt.Mailer == nil
	result := "dry run: rendered, not sent (subscribers.notify.enabled is false)"
	notSent := func(result string) (*store.Case, error) {
		return m.st.UpdateCase(cs.ID, func(c *store.Case) error {
			c.Notifications = append(c.Notifications, store.Delivery{At: now, To: c.Email, Reports: k, Result: result})
			c.Notifications = lastN(c.Notifications, maxNotifications)
			c.NotifyFailures++
			c.NotifyRetryAt = now.Add(backoff(notifyFirstRetry, c.NotifyFailures))
			c.Updated = now
			return nil
		})
	}
	var lease reporter.Lease
	if !dry && !force && m.opt.Claims != nil {
		// In a cluster every node holds the case: the digest of its
		// reports up to total is sent by one node. An operator's
		// notify (force) is sent by the node that was asked.
		var held *reporter.Claimed
		var err error
		lease, held, err = m.opt.Claims.Claim(ctx, notifyClaimKey(cs.Key, total), cs.ID, now, notifyClaimTTL)
		switch {
		case err != nil:
			return notSent("not sent: " + oneLine(err.Error()))
		case held != nil && held.Sent:
			return m.notifiedElsewhere(cs, now, k, total, held, by)
		case held != nil:
			return m.st.UpdateCase(cs.ID, func(c *store.Case) error {
				c.NotifyRetryAt = held.Until
				if soon := now.Add(time.Minute); soon.Before(c.NotifyRetryAt) {
					c.NotifyRetryAt = soon // to learn soon that it was sent
				}
				c.Updated = now
				return nil
			})
		}
	}
	if !dry {
		if err := m.opt.Mailer.Send(ctx, n.From, []string{cs.Email}, msg); err != nil {
			if lease != nil {
				m.releaseLease(lease)
			}
			return notSent("not sent: " + err.Error())
		}
		if lease != nil {
			m.doneLease(lease, cs.ID)
		}
		result = "sent"
	}
	if reason == "" {
		reason = fmt.Sprintf("notified %s of %d report(s)", cs.Email, k)
		if dry {
			reason += " (dry run)"
		}
	}
	return m.st.UpdateCase(cs.ID, func(c *store.Case) error {
		c.Notifications = append(c.Notifications, store.Delivery{At: now, To: c.Email, Reports: k, DryRun: dry, Result: result})
		c.Notifications = lastN(c.Notifications, maxNotifications)
		c.NotifiedUpTo = max(c.NotifiedUpTo, total)
		c.NotifyFailures, c.NotifyRetryAt = 0, time.Time{}
		c.LastNotified = now
		if c.State == store.CaseOpen {
			transition(c, store.CaseNotified, by, reason, now)
		}
		c.Updated = now
		return nil
	})
}

// notifyFirstRetry is the wait after a notification that could not be
// handed over (the smarthost or the subscriber's MX refused or was down).
const notifyFirstRetry = time.Minute

// configNotify reports whether notifications are configured at all
// (dry run included): a from address is needed to render one.
func configNotify(c *config.Config) bool { return c.Subscribers.Notify.From != "" }

// maxNotifications bounds the notification log kept on a case.
const maxNotifications = 50

func lastN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
