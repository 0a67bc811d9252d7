package cases

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// Webhook headers (docs/own-networks.md, "Webhook contract").
const (
	// HeaderTimestamp is the Unix time the call was signed at.
	HeaderTimestamp = "X-Xarfd-Timestamp"
	// HeaderSignature is "sha256=" + hex HMAC-SHA256(secret,
	// timestamp + "." + body).
	HeaderSignature = "X-Xarfd-Signature"
	// HeaderDelivery is the same for every attempt of one call: the
	// receiver's idempotency key.
	HeaderDelivery = "X-Xarfd-Delivery"
)

// Webhook actions.
const (
	ActionRestrict   = "restrict"
	ActionUnrestrict = "unrestrict"
)

// Webhook call states.
const (
	CallPending = store.WebhookPending
	CallDone    = "done"
	CallDryRun  = "dry-run"
	CallFailed  = "failed"
)

// WebhookBody is the JSON a webhook call posts.
type WebhookBody struct {
	Action     string     `json:"action"`
	Delivery   string     `json:"delivery"`
	CaseID     string     `json:"case_id"`
	Subscriber Subscriber `json:"subscriber"`
	IPs        []string   `json:"ips"`
	Complaints int        `json:"complaints"`
	TrapHits   int        `json:"trap_hits"`
	FirstSeen  time.Time  `json:"first_seen"`
	LastSeen   time.Time  `json:"last_seen"`
	Reason     string     `json:"reason"`
}

// Sign returns the HeaderSignature value of body signed at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a call as a receiver should: the signature, and a
// timestamp within window of now (replays are refused).
func Verify(secret []byte, tsHeader, sigHeader string, body []byte, now time.Time, window time.Duration) error {
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return errors.New("bad timestamp")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return errors.New("timestamp outside the replay window")
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sigHeader)) {
		return errors.New("bad signature")
	}
	return nil
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("subscribers.restrict.webhook.secret_file: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < 16 {
		return nil, fmt.Errorf("subscribers.restrict.webhook.secret_file %s: the secret is shorter than 16 bytes", path)
	}
	return b, nil
}

// backoff is the wait before attempt n+1: first·2^(n-1) capped at an
// hour, ±20 % jitter so that calls failing together do not retry together.
func backoff(first time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	d = min(d, time.Hour)
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// webhookFirstRetry is the first wait after a failed call.
const webhookFirstRetry = time.Second

// maxAnswer bounds what is kept of an endpoint's answer.
const maxAnswer = 200

// threshold says why cs must be restricted now, or "".
func threshold(set *settings, cs *store.Case) string {
	a := set.cfg.Subscribers.Restrict.After
	from := cs.LastSeen.Add(-a.Window.D())
	var reps, traps int
	for _, r := range cs.Reports {
		if r.At.After(from) {
			reps++
			if r.EvidenceSource == "spamtrap" {
				traps++
			}
		}
	}
	switch {
	case a.TrapHits > 0 && traps >= a.TrapHits:
		return fmt.Sprintf("%d trap hit(s) within %s (restrict.after.trap_hits: %d)", traps, a.Window.D(), a.TrapHits)
	case a.Reports > 0 && reps >= a.Reports:
		return fmt.Sprintf("%d reports within %s (restrict.after.reports: %d)", reps, a.Window.D(), a.Reports)
	}
	return ""
}

// Due does the case work that is due: notifications whose min_interval
// has passed, restrict calls for cases over the threshold, and webhook
// attempts whose backoff has passed.
func (m *Manager) Due(ctx context.Context) error {
	set := m.s()
	now := m.opt.Now().UTC()
	work, err := m.st.ActiveCases()
	if err != nil {
		return err
	}
	var errs []error
	down := false
	for _, cs := range work {
		if ctx.Err() != nil {
			break
		}
		if cs.State != store.CaseResolved && configNotify(set.cfg) {
			if c, err := m.notifyDue(ctx, set, cs, now, By, "", false); err != nil {
				errs = append(errs, err)
			} else if c != nil {
				cs = c
				m.changed(c)
			}
		}
		if cs.State != store.CaseResolved && cs.State != store.CaseRestricted && (cs.Webhook == nil || cs.Webhook.Action != ActionRestrict) {
			if why := threshold(set, cs); why != "" {
				c, err := m.queueWebhook(cs.ID, ActionRestrict, By, why, m.opt.Now().UTC())
				if err != nil {
					errs = append(errs, err)
					continue
				}
				cs = c
			}
		}
		if w := cs.Webhook; w != nil && w.Status == CallPending && !now.Before(w.NextAttempt) && !down {
			c, unreachable, err := m.call(ctx, set, cs)
			if err != nil {
				errs = append(errs, err)
			} else if c != nil {
				m.changed(c)
			}
			// An endpoint that does not answer at all is down for
			// the other cases too: their calls wait for the next
			// pass instead of each costing a timeout now.
			down = unreachable
		}
	}
	return errors.Join(errs...)
}

// queueWebhook makes action the case's pending call.
func (m *Manager) queueWebhook(id store.ID, action, by, reason string, now time.Time) (*store.Case, error) {
	return m.st.UpdateCase(id, func(c *store.Case) error {
		if c.Webhook != nil {
			c.WebhookHistory = append(c.WebhookHistory, *c.Webhook)
		}
		c.Webhook = &store.Webhook{Action: action, Reason: reason, By: by, Created: now, Status: CallPending, NextAttempt: now}
		c.Updated = now
		return nil
	})
}

// call makes one attempt of cs's pending webhook call and records it;
// unreachable says the endpoint gave no HTTP answer.
func (m *Manager) call(ctx context.Context, set *settings, cs *store.Case) (_ *store.Case, unreachable bool, _ error) {
	r := &set.cfg.Subscribers.Restrict
	w := cs.Webhook
	now := m.opt.Now().UTC()
	body, err := json.Marshal(m.webhookBody(cs))
	if err != nil {
		return nil, false, err
	}
	var answer string
	status := CallPending
	var lease reporter.Lease
	if !r.Enabled || r.Webhook.URL == "" {
		status, answer = CallDryRun, "dry run: not called (subscribers.restrict.enabled is false)"
	} else if m.opt.RestrictClaims != nil {
		// In a cluster every node holds the case: the call is made by
		// the node that claims it.
		var held *reporter.Claimed
		lease, held, err = m.opt.RestrictClaims.Claim(ctx, restrictClaimKey(cs, w.Action), cs.ID, now, restrictClaimTTL)
		switch {
		case err != nil:
			answer = "not called: " + oneLine(err.Error())
		case held != nil && held.Sent:
			return m.calledElsewhere(cs, w, now, held)
		case held != nil:
			c, err := m.st.UpdateCase(cs.ID, func(c *store.Case) error {
				if c.Webhook != nil && c.Webhook.Created == w.Created {
					c.Webhook.NextAttempt = held.Until
					if soon := now.Add(time.Minute); soon.Before(held.Until) {
						c.Webhook.NextAttempt = soon // to learn soon that it was made
					}
				}
				return nil
			})
			return c, false, err
		}
	}
	if lease != nil || (status == CallPending && m.opt.RestrictClaims == nil) {
		answer, err = m.post(ctx, set, r.Webhook.URL, r.Webhook.Timeout.D(), body, cs)
		if err == nil {
			status = CallDone
		}
		var se *statusError
		unreachable = err != nil && !errors.As(err, &se)
		if lease != nil {
			m.settleLease(lease, cs.ID, status == CallDone)
		}
	}
	c, err := m.st.UpdateCase(cs.ID, func(c *store.Case) error {
		if c.Webhook == nil || c.Webhook.Created != w.Created {
			return nil // replaced meanwhile
		}
		x := c.Webhook
		x.Attempts++
		x.Answers = append(x.Answers, fmt.Sprintf("%s attempt %d: %s", now.Format(time.RFC3339), x.Attempts, answer))
		if n := len(x.Answers) - 20; n > 0 {
			x.Answers = x.Answers[n:]
		}
		x.Status = status
		switch status {
		case CallPending:
			if now.Sub(x.Created) >= r.Webhook.GiveUpAfter.D() {
				x.Status, x.NextAttempt = CallFailed, time.Time{}
			} else {
				x.NextAttempt = now.Add(backoff(webhookFirstRetry, x.Attempts))
			}
		case CallDone, CallDryRun:
			x.NextAttempt = time.Time{}
			if x.Action == ActionRestrict {
				reason := x.Reason
				if status == CallDryRun {
					reason += " (dry run: webhook not called)"
				}
				transition(c, store.CaseRestricted, x.By, reason, now)
			}
		}
		c.Updated = now
		return nil
	})
	return c, unreachable, err
}

// statusError is an HTTP answer other than 2xx.
type statusError struct{ status string }

func (e *statusError) Error() string { return "webhook answered " + e.status }

func (m *Manager) webhookBody(cs *store.Case) WebhookBody {
	w := cs.Webhook
	b := WebhookBody{Action: w.Action, Delivery: cs.ID.String() + "-" + strconv.FormatInt(w.Created.UnixNano(), 36),
		CaseID: cs.ID.String(), Subscriber: Subscriber{ID: cs.SubscriberID, Email: cs.Email, Name: cs.Name},
		Complaints: cs.Complaints, TrapHits: cs.TrapHits, FirstSeen: cs.FirstSeen, LastSeen: cs.LastSeen, Reason: w.Reason}
	for _, ip := range cs.IPs {
		b.IPs = append(b.IPs, ip.String())
	}
	return b
}

// post makes one signed call bounded by timeout; a 2xx is success.
func (m *Manager) post(ctx context.Context, set *settings, url string, timeout time.Duration, body []byte, cs *store.Case) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	ts := m.opt.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "xarfd")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(set.secret, ts, body))
	req.Header.Set(HeaderDelivery, m.webhookBody(cs).Delivery)
	resp, err := m.opt.HTTPClient.Do(req)
	if err != nil {
		e := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			e = fmt.Sprintf("no answer within %s", timeout)
		}
		return e, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	answer := strings.TrimSpace(resp.Status + " " + oneLine(string(b)))
	if resp.StatusCode/100 != 2 {
		return answer, &statusError{resp.Status}
	}
	return answer, nil
}

// Act is an operator's action on a case (API): notify, restrict or
// resolve, by whom and why. In a cluster (SetReplicator) every node
// makes the case's change (ops.go).
func (m *Manager) Act(ctx context.Context, id store.ID, action, by, reason string) (*store.Case, error) {
	set := m.s()
	now := m.opt.Now().UTC()
	cs, err := m.st.GetCase(id)
	if err != nil {
		return nil, err
	}
	if err := allowed(set, cs, action); err != nil {
		return nil, err
	}
	if m.ops != nil {
		return m.actEverywhere(ctx, set, cs, action, by, reason, now)
	}
	var out *store.Case
	switch action {
	case "notify":
		out, err = m.notifyDue(ctx, set, cs, now, by, reason, true)
	default:
		out, err = m.change(cs, action, by, reason, now)
	}
	if err != nil {
		return nil, err
	}
	if out != nil {
		m.changed(out)
	} else {
		out = cs
	}
	m.Wake()
	return out, nil
}

// allowed says why action may not be made on cs now (nil: it may).
func allowed(set *settings, cs *store.Case, action string) error {
	switch action {
	case "notify":
		if !configNotify(set.cfg) {
			return fmt.Errorf("%w: subscribers.notify.from is not configured", ErrConflict)
		}
		if cs.Email == "" || cs.State == store.CaseResolved {
			return fmt.Errorf("%w: the case has no subscriber address to notify", ErrConflict)
		}
	case "restrict":
		if cs.State == store.CaseResolved || cs.State == store.CaseRestricted {
			return fmt.Errorf("%w: the case is %s", ErrConflict, cs.State)
		}
		if cs.Webhook != nil && cs.Webhook.Status == CallPending {
			return fmt.Errorf("%w: a %s call is pending", ErrConflict, cs.Webhook.Action)
		}
	case "resolve":
		if cs.State == store.CaseResolved {
			return fmt.Errorf("%w: the case is resolved", ErrConflict)
		}
	default:
		return fmt.Errorf("%w: unknown action %q", ErrConflict, action)
	}
	return nil
}

// change makes the state change of restrict or resolve on cs at now.
func (m *Manager) change(cs *store.Case, action, by, reason string, now time.Time) (*store.Case, error) {
	if action == "restrict" {
		return m.queueWebhook(cs.ID, ActionRestrict, by, reason, now)
	}
	restricted := cs.State == store.CaseRestricted
	return m.st.UpdateCase(cs.ID, func(c *store.Case) error {
		transition(c, store.CaseResolved, by, reason, now)
		if restricted {
			if c.Webhook != nil {
				c.WebhookHistory = append(c.WebhookHistory, *c.Webhook)
			}
			c.Webhook = &store.Webhook{Action: ActionUnrestrict, Reason: reason, By: by, Created: now, Status: CallPending, NextAttempt: now}
		}
		return nil
	})
}
