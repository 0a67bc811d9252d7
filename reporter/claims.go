package reporter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// Claims makes each report sent once across the nodes of a cluster.
// Every node holds every outbox entry in its own store; before a node
// sends one it claims the incident in a store the nodes share (package
// cluster: a JetStream KV bucket), keyed by the entry's de-duplication
// fingerprint. A nil Claims is a single node: the store's lease and
// rate counters are all there is.
type Claims interface {
	// Claim asks to do the work key for report id (created is when the
	// entry was created or last requeued), holding it for ttl unless
	// refreshed. It returns a Lease when this node won it; a *Claimed
	// when another node holds it or has done it; an error when the
	// shared store could not be asked.
	Claim(ctx context.Context, key string, id store.ID, created time.Time, ttl time.Duration) (Lease, *Claimed, error)
	// RateTake counts one report to each of contacts against perHour in
	// the last hour, cluster-wide. When one is over its allowance
	// nothing is counted and the *store.RateLimit says who and until
	// when.
	RateTake(ctx context.Context, contacts []string, now time.Time, perHour int) (*store.RateLimit, error)
	// Horizon is how long the shared store remembers that work was done:
	// an entry older than that may have been sent by a node and
	// forgotten since, so it is not sent.
	Horizon() time.Duration
}

// Lease is a claim this node won.
type Lease interface {
	// Refresh extends the claim by its ttl. An error means that it may
	// not be held any more (it expired and another node took it, or the
	// shared store cannot be reached): the work must not go on.
	Refresh(ctx context.Context) error
	// Done records the work done for good (messageID is what was sent):
	// no node does it again within the Horizon.
	Done(ctx context.Context, messageID string) error
	// Release gives the claim up undone; any node may take it.
	Release(ctx context.Context) error
}

// Claimed says why a claim was not won.
type Claimed struct {
	// Node is the node that holds or did the work, as report Report.
	Node   string
	Report store.ID
	// Sent: Node did it at At (with MessageID). Otherwise Node holds a
	// live claim, which runs out at Until if it is not refreshed.
	Sent bool
	// Cancelled: an operator cancelled Report on Node at At.
	Cancelled bool
	At, Until time.Time
	MessageID string
}

// SetClaims makes the reporter claim each report cluster-wide (see
// Claims). Call it before Run: a daemon starts its cluster node after
// the reporter it announces reports to.
func (r *Reporter) SetClaims(c Claims) { r.opt.Claims = c }

// ClaimCanceller is Claims that can record an operator's cancel
// cluster-wide (package cluster).
type ClaimCanceller interface {
	// CancelClaim makes the work key for report id cancelled: a node
	// that claims it later cancels its entry instead. It returns a
	// *Claimed (Sent) when report id was sent already.
	CancelClaim(ctx context.Context, key string, id store.ID) (*Claimed, error)
}

// Cancel cancels outbox entry id (store.Cancel) so that no node of a
// cluster sends it: with Claims that are a ClaimCanceller, the claim is
// recorded cancelled first, and when that fails the entry is left as it
// is (the error says why). On a single node it is store.Cancel.
func (r *Reporter) Cancel(ctx context.Context, id store.ID, now time.Time, reason string) (*store.OutboxEntry, error) {
	if cc, ok := r.opt.Claims.(ClaimCanceller); ok {
		e, err := r.st.GetOutbox(id)
		if err != nil {
			return nil, err
		}
		// Only a pending entry can be cancelled; the store says why
		// not for the others.
		if e.Status == store.OutboxPending {
			key, err := r.cancelKey(e)
			if err != nil {
				return nil, fmt.Errorf("cancelling the report in the cluster: %w", err)
			}
			sent, err := cc.CancelClaim(ctx, key, e.ID)
			if err != nil {
				return nil, fmt.Errorf("cancelling the report in the cluster: %w", err)
			}
			if sent != nil {
				r.log.Warn().Str("id", id.String()).Str("node", sent.Node).Msg("cancelled a report another cluster node sent already")
			}
		}
	}
	return r.st.Cancel(id, now, reason)
}

// cancelKey is the claim key entry e will have when it is sent: a
// pending entry not yet de-duplicated has no fingerprint, which is
// computed here as policy does, from the same report and evidence every
// node holds.
func (r *Reporter) cancelKey(e *store.OutboxEntry) (string, error) {
	if e.Fingerprint != "" {
		return claimKey(e), nil
	}
	rep, err := r.st.GetReportMeta(e.ID)
	if errors.Is(err, store.ErrNotFound) {
		return claimKey(e), nil // never sent: withheld when processed
	}
	if err != nil {
		return "", fmt.Errorf("reading the report: %w", err)
	}
	evidence, err := r.st.Raw(e.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("reading the evidence: %w", err)
	}
	x := *e
	x.Fingerprint = fingerprint(rep.SourceIP, evidence)
	return claimKey(&x), nil
}

// claimKey is the key of an entry's claim: the incident's fingerprint,
// so that two nodes whose de-duplication chose different reports of one
// incident still send it once; the report id when it has none.
func claimKey(e *store.OutboxEntry) string {
	if e.Fingerprint != "" {
		return "fp." + e.Fingerprint
	}
	return "id." + e.ID.String()
}

// maxClaimWait bounds how long an entry whose claim another node holds
// waits before it asks again, so that it learns within that time that
// the other node sent it (and settles as sent elsewhere).
const maxClaimWait = time.Minute

// releaseTimeout bounds giving a claim back after the delivery's
// context ended.
const releaseTimeout = 5 * time.Second

// claimCluster claims claimed entry e cluster-wide before it is sent. It
// returns the lease to hold while sending, or nil when e must not be
// sent now: another node sent it (e is settled so), holds it (e waits),
// or the shared store failed (e is retried).
func (r *Reporter) claimCluster(ctx context.Context, conf *settings, e *store.OutboxEntry) Lease {
	now := r.opt.Now().UTC()
	base := e.Created
	if e.Requeued.After(base) {
		base = e.Requeued
	}
	lease, held, err := r.opt.Claims.Claim(ctx, claimKey(e), e.ID, base, r.opt.Lease)
	if err != nil {
		r.retry(ctx, conf, e, fmt.Errorf("claiming the report in the cluster: %w", err))
		return nil
	}
	if held != nil && held.Sent {
		r.sentElsewhere(conf, e, held)
		return nil
	}
	if held != nil && held.Cancelled {
		// e is claimed here (sending); a pending entry is what an
		// operator's cancel ends.
		_, err := r.st.Release(e.ID, now)
		if err == nil {
			_, err = r.st.Cancel(e.ID, now, fmt.Sprintf("cancelled on cluster node %s at %s", held.Node, held.At.UTC().Format(time.RFC3339)))
		}
		if r.recorded(err, e.ID, "cancelling a report cancelled on another node") {
			r.log.Info().Str("id", e.ID.String()).Str("node", held.Node).Msg("report cancelled on another cluster node")
		}
		return nil
	}
	if held != nil {
		next := held.Until
		if wait := now.Add(maxClaimWait); wait.Before(next) {
			next = wait
		}
		_, err := r.st.Wait(e.ID, now, next, fmt.Sprintf("claimed by cluster node %s until %s", held.Node, held.Until.UTC().Format(time.RFC3339)))
		r.recorded(err, e.ID, "deferring a report claimed elsewhere")
		return nil
	}
	if h := r.opt.Claims.Horizon(); h > 0 && now.Sub(base) > h {
		// Whether a node sent it before the shared store forgot is
		// unknown: an operator decides (requeue sends it).
		r.releaseLease(lease)
		_, err := r.st.Withhold(e.ID, now, fmt.Sprintf("older than the cluster's memory of sent reports (%s): it may have been sent by another node; requeue to send it", h), e.SourceIP)
		if r.recorded(err, e.ID, "withholding an old report") {
			r.opt.Metrics.Delivery(resultWithheld)
		}
		return nil
	}
	if r.opt.AfterClaim != nil {
		r.opt.AfterClaim(e.ID)
	}
	return lease
}

// sentElsewhere settles e as sent by the node held names.
func (r *Reporter) sentElsewhere(conf *settings, e *store.OutboxEntry, held *Claimed) {
	ch := conf.channels[e.Channel]
	forget := held.Report == e.ID && ch != nil && !ch.Has(config.UseStore)
	x, err := r.st.MarkSentElsewhere(e.ID, r.opt.Now().UTC(), store.SentElsewhere{Node: held.Node, Report: held.Report, At: held.At, MessageID: held.MessageID}, forget)
	if r.recorded(err, e.ID, "recording a report sent elsewhere") {
		r.opt.Metrics.Delivery(resultSentElsewhere)
		r.log.Info().Str("id", e.ID.String()).Str("node", held.Node).Str("report", held.Report.String()).Str("status", string(x.Status)).Msg("report sent by another cluster node")
	}
}

// releaseLease gives a claim back, also when the delivery's context has
// ended (a stop): the next node need not wait for its ttl.
func (r *Reporter) releaseLease(l Lease) {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		if ok, n := r.limit.Allow("claim-release|" + errClass(err)); ok {
			r.log.Warn().Err(err).Int("repeated", n).Msg("releasing a cluster claim failed; it expires by itself")
		}
	}
}

// doneLease records a delivery cluster-wide. It tries a few times: until
// it is recorded, the claim expires after its ttl and another node would
// send the report again.
func (r *Reporter) doneLease(l Lease, id store.ID, messageID string) {
	if l == nil {
		return
	}
	var err error
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		err = l.Done(ctx, messageID)
		cancel()
		if err == nil || errors.Is(err, ErrClaimLost) {
			break
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
	if err != nil {
		r.log.Error().Err(err).Str("id", id.String()).Msg("recording a sent report in the cluster failed: another node may send it again once the claim expires")
	}
}

// ErrClaimLost is what a Lease returns when its claim is no longer this
// node's.
var ErrClaimLost = errors.New("cluster claim lost")

// lowerAll returns addrs lower-cased (rate counters are per address,
// whatever its case).
func lowerAll(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = strings.ToLower(a)
	}
	return out
}
