package cases

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// In a cluster every node builds the same cases from the same reports
// (under ids of its own), so every node's Due would notify the
// subscriber. The digest of a case's reports up to a total is claimed
// cluster-wide under the case's key and that total; the node that wins
// sends it, the others record it as sent by that node. Restrict webhook
// calls are not claimed yet (docs/reporting.md).

// SetClaims sets Options.Claims and RestrictClaims. Call it before Run
// and Due: a daemon starts its cluster node after the case manager it
// announces reports to.
func (m *Manager) SetClaims(notify, restrict reporter.Claims) {
	m.opt.Claims, m.opt.RestrictClaims = notify, restrict
}

// notifyClaimTTL is how long a claim holds a notification: longer than
// one delivery may take, as the reporter's lease.
const notifyClaimTTL = reporter.DefaultLease

// notifyClaimKey is the claim key of the digest of case key up to total
// reports (a hash: keys hold subscriber ids and addresses).
func notifyClaimKey(key string, total int) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16]) + ".n" + strconv.Itoa(total)
}

// restrictClaimTTL is how long a claim holds a webhook call: longer than
// its timeout.
const restrictClaimTTL = reporter.DefaultLease

// restrictClaimKey is the claim key of action on case cs.
func restrictClaimKey(cs *store.Case, action string) string {
	h := sha256.Sum256([]byte(cs.Key + "|" + cs.FirstSeen.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(h[:16]) + "." + action
}

// calledElsewhere records on cs that another node made its pending call
// w.
func (m *Manager) calledElsewhere(cs *store.Case, w *store.Webhook, now time.Time, held *reporter.Claimed) (*store.Case, bool, error) {
	c, err := m.st.UpdateCase(cs.ID, func(c *store.Case) error {
		if c.Webhook == nil || c.Webhook.Created != w.Created {
			return nil // replaced meanwhile
		}
		x := c.Webhook
		x.Status, x.NextAttempt = CallDone, time.Time{}
		x.Answers = append(x.Answers, fmt.Sprintf("%s: called by cluster node %s", held.At.UTC().Format(time.RFC3339), held.Node))
		if n := len(x.Answers) - 20; n > 0 {
			x.Answers = x.Answers[n:]
		}
		if x.Action == ActionRestrict {
			transition(c, store.CaseRestricted, x.By, x.Reason+" (called by cluster node "+held.Node+")", now)
		}
		c.Updated = now
		return nil
	})
	return c, false, err
}

// settleLease records a webhook call's claim: done when the endpoint
// took the call, released for another try otherwise.
func (m *Manager) settleLease(l reporter.Lease, id store.ID, done bool) {
	if done {
		m.doneLease(l, id)
	} else {
		m.releaseLease(l)
	}
}

// notifiedElsewhere records on cs that another node sent the digest of
// its reports up to total.
func (m *Manager) notifiedElsewhere(cs *store.Case, now time.Time, k, total int, held *reporter.Claimed, by string) (*store.Case, error) {
	reason := fmt.Sprintf("notified %s of %d report(s) by cluster node %s", cs.Email, k, held.Node)
	return m.st.UpdateCase(cs.ID, func(c *store.Case) error {
		c.Notifications = append(c.Notifications, store.Delivery{At: held.At, To: c.Email, Reports: k, Result: "sent by cluster node " + held.Node})
		c.Notifications = lastN(c.Notifications, maxNotifications)
		c.NotifiedUpTo = max(c.NotifiedUpTo, total)
		c.NotifyFailures, c.NotifyRetryAt = 0, time.Time{}
		if held.At.After(c.LastNotified) {
			c.LastNotified = held.At
		}
		if c.State == store.CaseOpen {
			transition(c, store.CaseNotified, by, reason, now)
		}
		c.Updated = now
		return nil
	})
}

// claimTimeout bounds recording a claim's outcome after the send.
const claimTimeout = 5 * time.Second

func (m *Manager) releaseLease(l reporter.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		m.log.Warn().Err(err).Msg("releasing a cluster claim failed; it expires by itself")
	}
}

// doneLease records a sent notification cluster-wide, trying a few
// times: until it is recorded, the claim expires after its TTL and
// another node would send the digest again.
func (m *Manager) doneLease(l reporter.Lease, id store.ID) {
	var err error
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		err = l.Done(ctx, "")
		cancel()
		if err == nil || errors.Is(err, reporter.ErrClaimLost) {
			break
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
	if err != nil {
		m.log.Error().Err(err).Str("case", id.String()).Msg("recording a notification or call done in the cluster failed: another node may do it again")
	}
}
