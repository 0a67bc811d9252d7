package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/reporter"
	"github.com/xarfd/xarfd/store"
)

// Outbound work is done once cluster-wide. Every node holds every outbox
// entry (and every case), so every node would send every report; before
// a node sends one it claims the incident in the KV bucket ClaimBucket,
// keyed by kind and the entry's de-duplication fingerprint:
//
//   - Absent (or deleted, or expired): the node writes a claim
//     {node, report, state claimed} with a per-message TTL of the
//     reporter's lease, expecting the key's last revision (compare and
//     set), so that of two nodes exactly one wins.
//   - Claimed by another node: that node is sending; the entry waits.
//     If that node dies, its claim expires after the TTL (the server
//     removes it and leaves a marker) and the next claim wins: the work
//     is taken over.
//   - Sent: the node that won it recorded the work done, without a TTL;
//     the entry settles as sent (or, if that node sent another report of
//     the same incident, as its duplicate), naming the node.
//   - Cancelled: an operator cancelled the report on a node
//     (CancelClaim), without a TTL; a node claiming that report settles
//     its entry as cancelled, unless it was requeued since.
//
// The holder refreshes its claim (compare and set again, with a new
// TTL) before each final dot of DATA: a node whose claim expired and
// was taken stops before the desk can accept the message. The bucket
// forgets a sent record after Horizon (the bucket's max age), which
// covers the de-duplication window and the retry period; the reporter
// does not send an entry older than that.
//
// Rate limits per contact hold cluster-wide in the bucket RateBucket:
// per contact (a hash of the address, so that any address is a valid
// key) the times of the reports in the last hour, changed by compare and
// set; the bucket's max age of an hour removes a contact's key an hour
// after its last report.

// Bucket names.
const (
	ClaimBucket = "xarfd_claims"
	RateBucket  = "xarfd_rate"
)

// Claim states in the bucket.
const (
	stateClaimed   = "claimed"
	stateSent      = "sent"
	stateCancelled = "cancelled"
)

// claimRecord is the value of a claim key.
type claimRecord struct {
	Node string `json:"node"`
	// Instance tells this node's processes apart: a claim of the same
	// node and another instance was left by a process that stopped.
	Instance string    `json:"instance"`
	Report   store.ID  `json:"report"`
	State    string    `json:"state"`
	At       time.Time `json:"at"`
	// Until is when a claimed record's TTL runs out (by the writer's
	// clock; the server's TTL is what removes it).
	Until     time.Time `json:"until,omitzero"`
	MessageID string    `json:"message_id,omitempty"`
}

// ClaimOptions configure Claims.
type ClaimOptions struct {
	// Node is this node's cluster.node.
	Node string
	// Kind is the work claimed: metrics.ClaimReport, ClaimNotification or
	// ClaimRestrict. It prefixes the keys, so kinds share the buckets.
	Kind string
	// Replicas of the buckets (cluster.replicas).
	Replicas int
	// Window is the de-duplication window: a sent record stands for
	// every report of its incident created within it.
	Window time.Duration
	// Horizon is how long a sent record is kept: at least Window and the
	// longest time an entry is retried (reporter.retry.give_up_after).
	Horizon time.Duration
	// Lease, when set, is the TTL of every claim of this kind
	// (cluster.claim_lease), whatever TTL the caller asks for: the lease
	// is the cluster's setting, and the work it holds (a report, a
	// notification, a restrict call) may be taken over after it.
	Lease time.Duration
	// MarkerTTL is how long the marker of an expired claim is kept (at
	// least a second; default 15 minutes): a claim won within it counts
	// as taken over.
	MarkerTTL time.Duration
	Metrics   *metrics.Metrics
	// Now is the clock of the records (tests).
	Now func() time.Time
}

// ReportClaimOptions are the ClaimOptions of a node's reporter under
// cfg: claims hold for cluster.claim_lease, the window is the reporter's
// de-duplication window, and sent records are kept while any node may
// still retry the report (reporter.retry.give_up_after and a lease), and
// an hour more.
func ReportClaimOptions(cfg *config.Config, node string, replicas int, m *metrics.Metrics) ClaimOptions {
	lease := reporter.DefaultLease
	if cfg.Cluster != nil && cfg.Cluster.ClaimLease > 0 {
		lease = cfg.Cluster.ClaimLease.D()
	}
	return ClaimOptions{
		Node: node, Kind: metrics.ClaimReport, Replicas: replicas, Metrics: m, Lease: lease,
		Window:  reporter.DefaultDedupWindow,
		Horizon: max(reporter.DefaultDedupWindow, cfg.Reporter.Retry.GiveUpAfter.D()) + lease + time.Hour,
	}
}

// NotifyClaimOptions are the ClaimOptions of a node's case manager
// (package cases): its keys name a case and a total of reports, so a
// digest sent once stays sent as long as the bucket keeps it (the
// window is the horizon). The buckets are the reporter's, configured
// alike.
func NotifyClaimOptions(cfg *config.Config, node string, replicas int, m *metrics.Metrics) ClaimOptions {
	o := ReportClaimOptions(cfg, node, replicas, m)
	o.Kind, o.Window = metrics.ClaimNotification, o.Horizon
	return o
}

// RestrictClaimOptions are NotifyClaimOptions for restrict and
// unrestrict webhook calls.
func RestrictClaimOptions(cfg *config.Config, node string, replicas int, m *metrics.Metrics) ClaimOptions {
	o := NotifyClaimOptions(cfg, node, replicas, m)
	o.Kind = metrics.ClaimRestrict
	return o
}

// Claims is reporter.Claims on JetStream KV buckets.
type Claims struct {
	instance string
	js       jetstream.JetStream
	opt      ClaimOptions

	mu     sync.Mutex
	claims jetstream.KeyValue // nil until ready
}

var _ reporter.Claims = (*Claims)(nil)

// NewClaims returns Claims for opt.Kind. It does no I/O: the buckets are
// created (or updated) by the first call that needs them, so that a node
// starts while its cluster has no quorum yet; until they exist every
// call fails, and the reporter retries its entries as after a 4xx.
// Every node passes the same Replicas and Horizon.
func NewClaims(js jetstream.JetStream, opt ClaimOptions) (*Claims, error) {
	if opt.Node == "" || opt.Kind == "" {
		return nil, errors.New("cluster claims: node and kind are required")
	}
	opt.Replicas = max(opt.Replicas, 1)
	opt.Horizon = max(opt.Horizon, opt.Window, time.Hour)
	if opt.MarkerTTL == 0 {
		opt.MarkerTTL = 15 * time.Minute
	}
	opt.MarkerTTL = max(opt.MarkerTTL, time.Second)
	if opt.Now == nil {
		opt.Now = time.Now
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("cluster claims: %w", err)
	}
	return &Claims{instance: hex.EncodeToString(nonce[:]), js: js, opt: opt}, nil
}

// ready creates or updates the buckets once.
func (c *Claims) ready(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.claims != nil {
		return nil
	}
	claims, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         ClaimBucket,
		Description:    "xarfd: claims of outbound work, each done once cluster-wide",
		History:        1,
		TTL:            c.opt.Horizon,
		LimitMarkerTTL: c.opt.MarkerTTL,
		Storage:        jetstream.FileStorage,
		Replicas:       c.opt.Replicas,
	})
	if err != nil {
		return fmt.Errorf("creating the KV bucket %s: %w", ClaimBucket, err)
	}
	_, err = c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RateBucket,
		Description: "xarfd: reports per contact in the last hour, cluster-wide",
		History:     1,
		TTL:         time.Hour,
		Storage:     jetstream.FileStorage,
		Replicas:    c.opt.Replicas,
	})
	if err != nil {
		return fmt.Errorf("creating the KV bucket %s: %w", RateBucket, err)
	}
	c.claims = claims
	return nil
}

// Horizon is how long a sent record is kept.
func (c *Claims) Horizon() time.Duration { return c.opt.Horizon }

// key is the bucket key of work key of this kind.
func (c *Claims) key(key string) string { return c.opt.Kind + "." + key }

// subject is the subject a key is written on.
func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// apiTimeout bounds a JetStream API request whose context has no
// deadline (the jetstream package's own default).
const apiTimeout = 5 * time.Second

// lastMsg is the last message on a key's subject, read from the
// stream's leader: a KV Get may be answered by any replica (direct get),
// which can lag, and a compare and set on a stale revision fails again
// and again. nil when there is none.
func (c *Claims) lastMsg(ctx context.Context, bucket, key string) (*lastMessage, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": kvSubject(bucket, key)})
	if err != nil {
		return nil, err
	}
	// A request the stream's leader received and did not answer (it
	// died, or lost its leadership) is never answered: without a
	// deadline the reporter's worker would wait forever.
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, apiTimeout)
		defer cancel()
	}
	reply, err := c.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return nil, fmt.Errorf("reading key %s of %s: %w", key, bucket, err)
	}
	var resp struct {
		Message *lastMessage `json:"message"`
		Error   *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("reading key %s of %s: %w", key, bucket, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading key %s of %s: %s (%d)", key, bucket, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("reading key %s of %s: an empty answer", key, bucket)
	}
	m := resp.Message
	if len(m.Hdrs) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(m.Hdrs); err != nil {
			return nil, fmt.Errorf("reading key %s of %s: %w", key, bucket, err)
		}
	}
	return m, nil
}

// lastMessage is a stored message as the stream's leader returns it.
type lastMessage struct {
	Sequence uint64 `json:"seq"`
	Hdrs     []byte `json:"hdrs"`
	Data     []byte `json:"data"`
	Header   nats.Header
}

// deleted says whether m deletes its key: a KV delete or purge, or the
// marker of an expiry (expired then says so).
func (m *lastMessage) deleted() (deleted, expired bool) {
	if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return true, false
	}
	if reason := m.Header.Get(jetstream.MarkerReasonHeader); reason != "" {
		return true, reason == "MaxAge"
	}
	return false, false
}

// current is the last message of a key: its record (nil when the key is
// absent or deleted), its revision (0 when absent) and whether it is an
// expiry's marker.
func (c *Claims) current(ctx context.Context, key string) (rec *claimRecord, rev uint64, expired bool, err error) {
	m, err := c.lastMsg(ctx, ClaimBucket, key)
	if err != nil || m == nil {
		return nil, 0, false, err
	}
	if del, exp := m.deleted(); del {
		return nil, m.Sequence, exp, nil
	}
	var r claimRecord
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, 0, false, fmt.Errorf("decoding claim %s: %w", key, err)
	}
	return &r, m.Sequence, false, nil
}

// errConflict is a compare and set that found another revision.
var errConflict = errors.New("claim changed meanwhile")

// put writes rec to key if its last revision is rev (0: it has none),
// with a TTL unless ttl is 0, and returns the new revision.
func (c *Claims) put(ctx context.Context, key string, rec claimRecord, rev uint64, ttl time.Duration) (uint64, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encoding claim: %w", err)
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
	if ttl > 0 {
		// The server's TTLs are whole seconds, at least one.
		opts = append(opts, jetstream.WithMsgTTL(max(ttl.Round(time.Second), time.Second)))
	}
	ack, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: kvSubject(ClaimBucket, key), Header: nats.Header{}, Data: b}, opts...)
	if isConflict(err) {
		return 0, errConflict
	}
	if err != nil {
		return 0, fmt.Errorf("writing claim %s: %w", key, err)
	}
	return ack.Sequence, nil
}

// isConflict says whether err is a compare and set that found another
// last revision (code 10071, or 10164 on replicated streams).
func isConflict(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// maxRaces bounds the compare-and-set rounds of one call. A round is
// lost when another node changed the key since it was read, or, on a
// replicated bucket, while another node's write to it is still being
// replicated (the leader refuses then, and the read still shows the
// state before); each round waits a little longer, with jitter.
const maxRaces = 10

// raceWait waits before compare-and-set round i+1 (0-based i); false
// when ctx ended.
func raceWait(ctx context.Context, i int) bool {
	d := time.Duration(i+1) * 5 * time.Millisecond
	d += time.Duration(mrand.Int64N(int64(d)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Claim implements reporter.Claims.
func (c *Claims) Claim(ctx context.Context, key string, id store.ID, created time.Time, ttl time.Duration) (reporter.Lease, *reporter.Claimed, error) {
	if err := c.ready(ctx); err != nil {
		c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimError)
		return nil, nil, err
	}
	if c.opt.Lease > 0 {
		ttl = c.opt.Lease
	}
	k := c.key(key)
	for i := range maxRaces {
		rec, rev, expired, err := c.current(ctx, k)
		if err != nil {
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimError)
			return nil, nil, err
		}
		takeover := expired
		switch {
		case rec == nil:
		case rec.State == stateSent && rec.Report == id && rec.Node == c.opt.Node:
			// This node sent it to some recipients and goes on with the
			// rest: the record stays sent, the lease only checks it.
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimWon)
			return &lease{c: c, key: k, rev: rev, rec: *rec, ttl: ttl, sent: true}, nil, nil
		case rec.State == stateSent && (rec.Report == id || created.Sub(rec.At) < c.opt.Window):
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimSentElsewhere)
			return nil, &reporter.Claimed{Node: rec.Node, Report: rec.Report, Sent: true, At: rec.At, MessageID: rec.MessageID}, nil
		case rec.State == stateSent:
			// The same fingerprint after the window: a new incident.
		case rec.State == stateCancelled && rec.Report == id && !created.After(rec.At):
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimCancelled)
			return nil, &reporter.Claimed{Node: rec.Node, Report: rec.Report, Cancelled: true, At: rec.At}, nil
		case rec.State == stateCancelled:
			// Another report of the incident (only the one an operator
			// cancelled is cancelled), or this one requeued since.
		case rec.Node == c.opt.Node && (rec.Instance != c.instance || rec.Report == id):
			// This node's claim, left by a process that stopped (one
			// process holds a node's store), or by this process for
			// this very report, whose earlier attempt let it run (its
			// answer was unknown; the reporter holds an entry in one
			// worker at a time): taken over at once.
			takeover = true
		default:
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimLost)
			return nil, &reporter.Claimed{Node: rec.Node, Report: rec.Report, At: rec.At, Until: rec.Until}, nil
		}
		now := c.opt.Now().UTC()
		mine := claimRecord{Node: c.opt.Node, Instance: c.instance, Report: id, State: stateClaimed, At: now, Until: now.Add(ttl)}
		nrev, err := c.put(ctx, k, mine, rev, ttl)
		if errors.Is(err, errConflict) && raceWait(ctx, i) {
			continue
		}
		if err != nil {
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimError)
			return nil, nil, err
		}
		if takeover {
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimTakenOver)
		} else {
			c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimWon)
		}
		return &lease{c: c, key: k, rev: nrev, rec: mine, ttl: ttl}, nil, nil
	}
	c.opt.Metrics.Claim(c.opt.Kind, metrics.ClaimError)
	return nil, nil, fmt.Errorf("claiming %s: changed by other nodes %d times in a row", k, maxRaces)
}

// CancelClaim implements reporter.ClaimCanceller: the key becomes
// cancelled for report id, without a TTL, so that no node claims it
// again. A claim another node holds is overwritten: its lease fails at
// the next refresh, before the final dot of DATA; a message already
// accepted by the desk stays sent. A sent record is kept (sent says
// so): what was sent cannot be called back.
// An error (the bucket could not be asked or written: no quorum, NATS
// unreachable) wraps ErrUnavailable, so that the operator is answered
// 503, try again, and nothing changed on this node.
func (c *Claims) CancelClaim(ctx context.Context, key string, id store.ID) (*reporter.Claimed, error) {
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	sent, err := c.cancelClaim(ctx, key, id)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return sent, nil
}

// cancelTimeout bounds an operator's cancel waiting for the claim bucket
// (as cluster.publish_timeout's default bounds a publish).
const cancelTimeout = 10 * time.Second

func (c *Claims) cancelClaim(ctx context.Context, key string, id store.ID) (sent *reporter.Claimed, err error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	k := c.key(key)
	for i := range maxRaces {
		rec, rev, _, err := c.current(ctx, k)
		if err != nil {
			return nil, err
		}
		if rec != nil && rec.State == stateSent && rec.Report == id {
			return &reporter.Claimed{Node: rec.Node, Report: rec.Report, Sent: true, At: rec.At, MessageID: rec.MessageID}, nil
		}
		if rec != nil && rec.State == stateCancelled && rec.Report == id {
			return nil, nil
		}
		if rec != nil && rec.State == stateSent && rec.Report != id {
			// Another report of the incident was sent: the record
			// keeps it from being sent again; this one settles as its
			// duplicate elsewhere, and is cancelled here.
			return nil, nil
		}
		now := c.opt.Now().UTC()
		_, err = c.put(ctx, k, claimRecord{Node: c.opt.Node, Instance: c.instance, Report: id, State: stateCancelled, At: now}, rev, 0)
		if errors.Is(err, errConflict) && raceWait(ctx, i) {
			continue
		}
		return nil, err
	}
	return nil, fmt.Errorf("cancelling %s: changed by other nodes %d times in a row", k, maxRaces)
}

// lease is a won claim: the key's revision it wrote last.
type lease struct {
	c    *Claims
	key  string
	rev  uint64
	rec  claimRecord
	ttl  time.Duration
	sent bool // the key holds this node's sent record
}

// Refresh implements reporter.Lease: it writes the claim again with a
// new TTL, if nobody changed it since.
func (l *lease) Refresh(ctx context.Context) error {
	if l.sent {
		_, rev, _, err := l.c.current(ctx, l.key)
		if err != nil {
			return err
		}
		if rev != l.rev {
			return fmt.Errorf("claim %s: %w", l.key, reporter.ErrClaimLost)
		}
		return nil
	}
	now := l.c.opt.Now().UTC()
	rec := l.rec
	rec.At, rec.Until = now, now.Add(l.ttl)
	rev, err := l.c.put(ctx, l.key, rec, l.rev, l.ttl)
	if errors.Is(err, errConflict) {
		return fmt.Errorf("claim %s: %w", l.key, reporter.ErrClaimLost)
	}
	if err != nil {
		return err
	}
	l.rev, l.rec = rev, rec
	return nil
}

// Done implements reporter.Lease: the record becomes sent, without a
// TTL; the bucket keeps it for the Horizon.
func (l *lease) Done(ctx context.Context, messageID string) error {
	rec := claimRecord{Node: l.rec.Node, Instance: l.rec.Instance, Report: l.rec.Report, State: stateSent, At: l.c.opt.Now().UTC(), MessageID: messageID}
	rev, err := l.c.put(ctx, l.key, rec, l.rev, 0)
	if errors.Is(err, errConflict) {
		return fmt.Errorf("claim %s: %w", l.key, reporter.ErrClaimLost)
	}
	if err != nil {
		return err
	}
	l.rev, l.rec, l.sent = rev, rec, true
	return nil
}

// Release implements reporter.Lease: the claim is deleted, if nobody
// changed it since. A sent record is never deleted.
func (l *lease) Release(ctx context.Context) error {
	if l.sent {
		return nil
	}
	err := l.c.claims.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil // expired or taken: not ours to delete
	}
	if err != nil {
		return fmt.Errorf("releasing claim %s: %w", l.key, err)
	}
	return nil
}

// rateKey is the key of a contact's counter: a hash, since addresses
// hold characters that keys may not.
func rateKey(contact string) string {
	h := sha256.Sum256([]byte(strings.ToLower(contact)))
	return "c." + hex.EncodeToString(h[:16])
}

// RateTake implements reporter.Claims: per contact, the times of the
// reports in the last hour, changed by compare and set. A contact over
// perHour undoes what this call counted for the others.
func (c *Claims) RateTake(ctx context.Context, contacts []string, now time.Time, perHour int) (*store.RateLimit, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	var taken []string
	for _, ct := range contacts {
		limited, err := c.rateTake(ctx, ct, now, perHour)
		if err == nil && limited == nil {
			taken = append(taken, ct)
			continue
		}
		for _, t := range taken {
			// Best effort: what is not given back expires in an hour.
			_ = c.rateGiveBack(ctx, t, now)
		}
		return limited, err
	}
	return nil, nil
}

// rateTimes reads a contact's counter: the times within the hour before
// now, and the revision (0: none; a deleted key's marker revision).
func (c *Claims) rateTimes(ctx context.Context, key string, now time.Time) ([]time.Time, uint64, error) {
	m, err := c.lastMsg(ctx, RateBucket, key)
	if err != nil || m == nil {
		return nil, 0, err
	}
	if del, _ := m.deleted(); del {
		return nil, m.Sequence, nil
	}
	var times []time.Time
	if err := json.Unmarshal(m.Data, &times); err != nil {
		// A damaged counter counts nothing: it is overwritten.
		times = nil
	}
	return slices.DeleteFunc(times, func(t time.Time) bool { return now.Sub(t) >= time.Hour }), m.Sequence, nil
}

// rateWrite stores times at key if its revision is still rev.
func (c *Claims) rateWrite(ctx context.Context, key string, times []time.Time, rev uint64) error {
	b, err := json.Marshal(times)
	if err != nil {
		return fmt.Errorf("encoding the rate counter: %w", err)
	}
	_, err = c.js.PublishMsg(ctx, &nats.Msg{Subject: kvSubject(RateBucket, key), Header: nats.Header{}, Data: b}, jetstream.WithExpectLastSequencePerSubject(rev))
	if isConflict(err) {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("writing the rate counter: %w", err)
	}
	return nil
}

func (c *Claims) rateTake(ctx context.Context, contact string, now time.Time, perHour int) (*store.RateLimit, error) {
	key := rateKey(contact)
	for i := range maxRaces {
		times, rev, err := c.rateTimes(ctx, key, now)
		if err != nil {
			return nil, err
		}
		if len(times) >= perHour {
			slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
			return &store.RateLimit{Contact: contact, Until: times[len(times)-perHour].Add(time.Hour)}, nil
		}
		err = c.rateWrite(ctx, key, append(times, now), rev)
		if errors.Is(err, errConflict) && raceWait(ctx, i) {
			continue
		}
		return nil, err
	}
	return nil, fmt.Errorf("counting a report to %s: the counter changed %d times in a row", contact, maxRaces)
}

// rateGiveBack removes one count at now from contact's counter.
func (c *Claims) rateGiveBack(ctx context.Context, contact string, now time.Time) error {
	key := rateKey(contact)
	for i := range maxRaces {
		times, rev, err := c.rateTimes(ctx, key, now)
		if err != nil || rev == 0 {
			return err
		}
		j := slices.IndexFunc(times, func(t time.Time) bool { return t.Equal(now) })
		if j < 0 {
			return nil
		}
		if err := c.rateWrite(ctx, key, slices.Delete(times, j, j+1), rev); !errors.Is(err, errConflict) || !raceWait(ctx, i) {
			return err
		}
	}
	return nil
}
