package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/lograte"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// StreamName is the replicated stream of records; SubjectPrefix starts
// the subject of each record (followed by the first entry's channel).
const (
	StreamName    = "XARFD"
	SubjectPrefix = "xarfd.rec."
)

// DuplicateWindow is how long the stream remembers a Nats-Msg-Id: a
// publish retried within it (nats.go retries when no server answered)
// is stored once.
const DuplicateWindow = 2 * time.Minute

// consumerAckWait is how long a record delivered to this node's
// consumer may go unacknowledged before it is delivered again.
const consumerAckWait = 10 * time.Second

// applyBatch is the most records one consumer transaction applies.
const applyBatch = 256

// healthInterval is how often the monitor asks for the stream's leader
// and the consumer's lag; a status older than staleAfter is not trusted.
const (
	healthInterval = 2 * time.Second
	staleAfter     = 5 * healthInterval
)

// ErrUnavailable is wrapped by Commit's errors: the record is not on a
// quorum, nothing was stored, the client must try again (451 4.3.0).
// It wraps store.ErrCommit, which the API already answers with 503.
var ErrUnavailable = fmt.Errorf("cluster: the stream did not acknowledge the record: %w", store.ErrCommit)

// Options are the optional parts of a Node.
type Options struct {
	Logger zerolog.Logger
	// Metrics registers the cluster's collectors; nil counts nothing.
	Metrics *Metrics
	// OnApply is called for every report the consumer stored, after the
	// transaction holding it is durable. Reports that Commit stored are
	// its caller's to announce (ingest calls OnReport for them): so each
	// report is announced once per node. It must not block.
	OnApply func(*store.Report)
	// OnStored, when set, is called with the entries of each record the
	// consumer stored (tests).
	OnStored func([]store.Entry)
	// MaxPayload replaces the embedded server's max_payload (tests: the
	// limit a record must fit is read from the connection).
	MaxPayload int32
	// ApplyOp applies an operator's action (ops.Op) to this node, for
	// the consumer and for Replicate; nil applies none (each is skipped).
	ApplyOp ops.Applier
}

// Node is this xarfd's membership in the cluster: its NATS connection
// (and embedded server), the publisher and the consumer that applies the
// stream to the local store.
type Node struct {
	cfg     *config.Cluster
	maxAge  time.Duration
	st      *store.Store
	log     zerolog.Logger
	m       *Metrics
	onApply func(*store.Report)
	onStore func([]store.Entry)
	ops     ops.Applier
	// opMu makes an action's check, apply and mark one step (op.go).
	opMu sync.Mutex
	// waiting are this node's Replicate calls waiting for their action
	// to come through the consumer, by action id.
	waitMu  sync.Mutex
	waiting map[string]chan<- error

	srv *server.Server // nil with nats.url
	nc  *nats.Conn
	js  jetstream.JetStream

	ready  atomic.Bool // the stream and the consumer exist
	health atomic.Pointer[Health]

	// fp is this node's configuration fingerprint; peers the parts in
	// which each other node's differs (only those that differ).
	fp      Fingerprint
	peersMu sync.Mutex
	peers   map[string][]string
	// members are the nodes with a fingerprint in NodesBucket, reads
	// the newest record version each node says it decodes, and
	// membersKnown whether the watcher has read them all once.
	members      map[string]bool
	reads        map[string]int
	membersKnown bool

	// tooLarge rate-limits the log lines of records too large to publish.
	tooLarge *lograte.Limiter

	// reconnectFails rate-limits the log lines of failed reconnects.
	reconnectFails *lograte.Limiter

	// driftLogged is the last difference from the stream's settings
	// logged (consume's goroutine only).
	driftLogged string

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// Start starts the embedded NATS server (or connects to nats.url) and the
// consumer and monitor goroutines. It does not wait for the JetStream
// cluster to form: until the stream exists, Commit fails (451) and
// Health says why. cfg.Cluster must be set.
func Start(cfg *config.Config, res *config.Resources, st *store.Store, opt Options) (*Node, error) {
	cl := cfg.Cluster
	if cl == nil {
		return nil, errors.New("cluster: no cluster configuration")
	}
	n := &Node{cfg: cl, maxAge: StreamMaxAge(cfg), st: st, log: opt.Logger, m: opt.Metrics,
		onApply: opt.OnApply, onStore: opt.OnStored, ops: opt.ApplyOp, waiting: map[string]chan<- error{}, fp: ConfigFingerprint(cfg, res), peers: map[string][]string{},
		members: map[string]bool{}, reads: map[string]int{},
		reconnectFails: lograte.New(lograte.Every, nil), tooLarge: lograte.New(lograte.Every, nil)}
	n.health.Store(&Health{Node: cl.Node, Reason: ReasonStarting, Checked: time.Now()})
	copts := []nats.Option{
		nats.Name("xarfd " + cl.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			n.log.Warn().AnErr("error", err).Msg("cluster: disconnected from NATS; accepting is refused with 451 until it is back")
		}),
		nats.ReconnectHandler(func(*nats.Conn) { n.log.Info().Msg("cluster: reconnected to NATS") }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			// Every attempt (four a second) fails alike: a password
			// changed on the servers must show, once a minute.
			why := credentialsRefused(err, cl.NATS)
			if why == "" {
				why = "the servers cannot be reached"
			}
			if ok, k := n.reconnectFails.Allow(why); ok {
				n.log.Warn().AnErr("error", err).Int("repeated", k).Msg("cluster: reconnecting to NATS failed: " + why)
			}
		}),
	}
	url := cl.NATS.URL
	if e := cl.NATS.Embedded; e != nil {
		o, err := serverOptions(cfg, res)
		if err != nil {
			return nil, err
		}
		if opt.MaxPayload > 0 {
			o.MaxPayload, o.MaxPending = opt.MaxPayload, 2*int64(opt.MaxPayload)
		}
		if n.srv, err = startServer(o, n.log.With().Str("component", "nats").Logger()); err != nil {
			return nil, err
		}
		copts = append(copts, nats.InProcessServer(n.srv))
		url = ""
	} else {
		if f := cl.NATS.CredsFile; f != "" {
			copts = append(copts, nats.UserCredentials(f))
		}
		if cl.NATS.User != "" {
			copts = append(copts, nats.UserInfo(cl.NATS.User, res.NATSPassword))
		}
		if t := cl.NATS.TLS; t.Enabled() {
			tc, err := tlsConfig(t, false)
			if err != nil {
				return nil, err
			}
			copts = append(copts, nats.Secure(tc))
		}
	}
	nc, err := nats.Connect(url, copts...)
	if why := credentialsRefused(err, cl.NATS); why != "" && cl.NATS.URL != "" {
		// Retried in the background (next step), a wrong password or
		// certificate would only show as "stream not ready": this node's
		// own mistake must stop it at start.
		return nil, fmt.Errorf("cluster: connecting to NATS at %s: %s: %w", cl.NATS.URL, why, err)
	}
	if err != nil && cl.NATS.URL != "" {
		// Servers still starting are retried in the background, as
		// with a connection lost later.
		nc, err = nats.Connect(url, append(copts, nats.RetryOnFailedConnect(true))...)
	}
	if err != nil {
		n.stopServer()
		return nil, fmt.Errorf("cluster: connecting to NATS: %w", err)
	}
	n.nc = nc
	if n.js, err = jetstream.New(nc); err != nil {
		n.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if mp := nc.MaxPayload(); mp > 0 && mp < cfg.SMTP.MaxMessageBytes+1<<20 && nc.IsConnected() {
		n.log.Warn().Int64("max_payload", mp).Int64("smtp.max_message_bytes", cfg.SMTP.MaxMessageBytes).
			Msg("cluster: the NATS servers' max_payload is below smtp.max_message_bytes: larger messages get 552 5.3.4; raise max_payload on the servers")
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Go(func() { n.consume(ctx) })
	n.wg.Go(func() { n.monitor(ctx) })
	n.wg.Go(func() { n.watchNodes(ctx) })
	return n, nil
}

// credentialsRefused says which setting the error of a connection
// attempt blames ("" when it is not one of authentication or TLS
// verification: a server not up yet is retried).
func credentialsRefused(err error, c config.NATS) string {
	if err == nil {
		return ""
	}
	creds := "the servers require credentials: set cluster.nats.user and password_file, or creds_file"
	switch {
	case c.CredsFile != "":
		creds = "check cluster.nats.creds_file"
	case c.User != "":
		creds = "check cluster.nats.user and password_file"
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return "authentication failed (" + creds + ")"
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return "the server's TLS certificate was not accepted (check cluster.nats.tls.ca_file and the servers' names)"
	case errors.As(err, &alert):
		return "the server refused this node's TLS handshake (check cluster.nats.tls.cert_file and key_file)"
	case errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted):
		return "TLS is required on one side only (check cluster.nats.tls)"
	}
	return ""
}

// StreamMaxAge is the stream's retention: the longest retention of any
// channel (and of data whose channel is gone), so that a node that
// builds its read model from the stream gets everything the others
// still keep, and the stream does not keep what every node deleted.
func StreamMaxAge(cfg *config.Config) time.Duration {
	d := cfg.RetentionOrphaned.D()
	for _, ch := range cfg.Channels {
		d = max(d, ch.Retention.D())
	}
	return d
}

// Server is the embedded NATS server; nil with nats.url.
func (n *Node) Server() *server.Server { return n.srv }

// Conn is the node's NATS connection (the claims share it).
func (n *Node) Conn() *nats.Conn { return n.nc }

// JetStream is the node's JetStream context (the claims share it).
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// Name is cluster.node.
func (n *Node) Name() string { return n.cfg.Node }

// Close stops the consumer, closes the connection and shuts the embedded
// server down. Records not yet applied are applied after a restart.
func (n *Node) Close() {
	if !n.closed.CompareAndSwap(false, true) {
		return
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	if n.nc != nil {
		n.nc.Close()
	}
	n.stopServer()
}

func (n *Node) stopServer() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// Commit publishes entries as one record and returns once the stream
// acknowledged it, or with an error wrapping ErrUnavailable after
// cluster.publish_timeout, or ingest.ErrTooLarge when the record exceeds
// the servers' max_payload. After the acknowledgement it stores them in
// the local store (PutNew) and reports which it stored now: the others
// reached this node through the stream first. A local failure is logged
// and not returned: the record is durable on the quorum, and the
// consumer applies it when the store works again.
func (n *Node) Commit(entries []store.Entry) ([]bool, error) {
	if len(entries) == 0 || entries[0].Message == nil && entries[0].Report == nil {
		return nil, errors.New("cluster: committing a record without entries")
	}
	id := entryID(&entries[0]).String()
	b, err := n.encode(id, entries)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.PublishTimeout.D())
	defer cancel()
	start := time.Now()
	_, err = n.js.Publish(ctx, subject(entries), b, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamName))
	n.m.published(time.Since(start), err)
	if err != nil {
		return nil, fmt.Errorf("publishing record %s: %w: %w", id, ErrUnavailable, err)
	}
	stored, err := n.st.PutNew(entries)
	if err != nil {
		n.log.Error().Err(err).Str("id", id).Msg("cluster: storing an acknowledged record locally failed; the stream consumer applies it later")
		return make([]bool, len(entries)), nil
	}
	n.m.applied(resultStored, count(stored, true))
	return stored, nil
}

// recordRoom is what the NATS message of a record carries besides the
// record and counts against max_payload: its headers (Nats-Msg-Id,
// Nats-Expected-Stream, about 100 bytes), with room to spare.
const recordRoom = 1024

// encode encodes entries as a record that fits in one NATS message.
// Identical message bytes travel once (version 2) when every node reads
// that version, or when version 1 would not fit at all (a node of an
// older version then skips that one record, counted damaged, instead of
// every node losing it). A record that does not fit even so is refused
// with ingest.ErrTooLarge: the client gets a permanent 552, not a 451 it
// would retry for ever.
func (n *Node) encode(id string, entries []store.Entry) ([]byte, error) {
	share := n.sharedReadable()
	encode := EncodeRecord
	if share {
		encode = EncodeRecordShared
	}
	b, err := encode(entries)
	if err != nil {
		return nil, err
	}
	// The servers' max_payload, as the connection last learnt it (0
	// before it ever connected: the publish then fails alike).
	mp := n.nc.MaxPayload()
	if mp <= 0 || int64(len(b))+recordRoom <= mp {
		return b, nil
	}
	if !share {
		if b, err = EncodeRecordShared(entries); err != nil {
			return nil, err
		}
		if int64(len(b))+recordRoom <= mp {
			return b, nil
		}
	}
	n.m.refusedTooLarge()
	if ok, k := n.tooLarge.Allow("too large"); ok {
		n.log.Warn().Str("id", id).Int("entries", len(entries)).Int("record_bytes", len(b)).Int64("max_payload", mp).Int("repeated", k).
			Msg("cluster: a message's record exceeds the NATS servers' max_payload; answered 552 5.3.4 (lower smtp.max_message_bytes, or raise max_payload on the servers)")
	}
	return nil, fmt.Errorf("publishing record %s: %d bytes, the NATS servers take at most %d: %w", id, len(b), mp-recordRoom, ingest.ErrTooLarge)
}

func subject(entries []store.Entry) string {
	ch := "none"
	if e := &entries[0]; e.Message != nil {
		ch = e.Message.Channel
	} else if e.Report != nil {
		ch = e.Report.Channel
	}
	return SubjectPrefix + ch
}

func count(bs []bool, v bool) int {
	n := 0
	for _, b := range bs {
		if b == v {
			n++
		}
	}
	return n
}

// setup creates or updates the stream and this node's durable consumer.
func (n *Node) setup(ctx context.Context) (jetstream.Consumer, error) {
	// Short: before the JetStream cluster has elected its meta leader a
	// request waits for nothing, and the next try comes sooner.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	want := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "xarfd records: every accepted message's store entries",
		Subjects:    []string{SubjectPrefix + ">", OpSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
		MaxAge:      n.maxAge,
		Discard:     jetstream.DiscardOld,
		Duplicates:  DuplicateWindow,
	}
	if s, err := n.js.Stream(ctx, StreamName); err == nil {
		var drift []Drift
		want, drift = Reconcile(s.CachedInfo().Config, want)
		n.logDrift(drift)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("reading stream %s: %w", StreamName, err)
	}
	s, err := n.js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", StreamName, err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       n.cfg.Node,
		Description:   "xarfd node " + n.cfg.Node + ": applies the stream to its store",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// Records delivered to a process that died (SIGKILL, a crash)
		// come again only after AckWait: until then the restarted node
		// lacks them. Applying is idempotent, so a short wait costs at
		// most a redelivery of a batch that took longer to commit.
		AckWait:       consumerAckWait,
		MaxAckPending: 4 * applyBatch,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s: %w", n.cfg.Node, err)
	}
	return c, nil
}

// Drift is a setting of the stream that differs from this node's.
type Drift struct {
	// Key is the configuration key the setting derives from.
	Key string
	// Stream and Node are the stream's value and this node's.
	Stream, Node string
	// Kept says which value the stream keeps: "stream" or "node".
	Kept string
}

// Reconcile is the stream configuration a node applies at start, given
// the stream's current one (set by another node, or by an older
// version) and its own. Every node calls CreateOrUpdateStream at start:
// taken as it is, the last node to start would win, and a node with a
// smaller cluster.replicas or a shorter retention would silently lower
// what the others set. So a value is never lowered: replicas, max_age
// (0 = unlimited counts as the longest) and the duplicate window keep the
// larger of the two; lowering one cluster-wide is an operator's step
// (nats stream edit, see docs/operations.md). Every difference is
// returned, for the start to log.
func Reconcile(have, want jetstream.StreamConfig) (jetstream.StreamConfig, []Drift) {
	var drift []Drift
	if have.Replicas != want.Replicas {
		d := Drift{Key: "cluster.replicas", Stream: fmt.Sprint(have.Replicas), Node: fmt.Sprint(want.Replicas), Kept: "node"}
		if have.Replicas > want.Replicas {
			want.Replicas, d.Kept = have.Replicas, "stream"
		}
		drift = append(drift, d)
	}
	if have.MaxAge != want.MaxAge {
		d := Drift{Key: "channels[].retention, retention_orphaned (the longest)", Stream: age(have.MaxAge), Node: age(want.MaxAge), Kept: "node"}
		if have.MaxAge == 0 || (want.MaxAge != 0 && have.MaxAge > want.MaxAge) {
			want.MaxAge, d.Kept = have.MaxAge, "stream"
		}
		drift = append(drift, d)
	}
	// A subject is never dropped either: a stream an older version
	// created lacks the operators' actions (xarfd.op.>), added here; a
	// node of an older version drops it again when it starts (its
	// actions then answer 503 until a newer node starts).
	var missing []string
	for _, sub := range want.Subjects {
		if !slices.Contains(have.Subjects, sub) {
			missing = append(missing, sub)
		}
	}
	want.Subjects = slices.Clone(want.Subjects) // the caller's stays as it was
	for _, sub := range have.Subjects {
		if !slices.Contains(want.Subjects, sub) {
			want.Subjects = append(want.Subjects, sub)
		}
	}
	if len(missing) > 0 && len(have.Subjects) > 0 {
		drift = append(drift, Drift{Key: "stream subjects (xarfd version)", Stream: strings.Join(have.Subjects, " "),
			Node: strings.Join(want.Subjects, " "), Kept: "node"})
	}
	if have.Duplicates != want.Duplicates {
		d := Drift{Key: "duplicate window (xarfd version)", Stream: have.Duplicates.String(), Node: want.Duplicates.String(), Kept: "node"}
		if have.Duplicates > want.Duplicates {
			want.Duplicates, d.Kept = have.Duplicates, "stream"
		}
		drift = append(drift, d)
	}
	return want, drift
}

func age(d time.Duration) string {
	if d == 0 {
		return "unlimited"
	}
	return d.String()
}

// logDrift warns once per node (setup runs again after every consumer
// error) of each setting where the stream and this node differ.
func (n *Node) logDrift(drift []Drift) {
	var b strings.Builder
	for _, d := range drift {
		fmt.Fprintf(&b, "%s: stream %s, this node %s, kept %s; ", d.Key, d.Stream, d.Node, d.Kept)
	}
	key := b.String()
	if key == "" || n.driftLogged == key {
		return
	}
	n.driftLogged = key
	for _, d := range drift {
		ev := n.log.Warn().Str("key", d.Key).Str("stream", d.Stream).Str("node", d.Node).Str("kept", d.Kept)
		if d.Kept == "stream" {
			ev.Msg("cluster: this node's configuration differs from the stream's, which another node set; the larger value is kept (a stream setting is never lowered at start)")
		} else {
			ev.Msg("cluster: this node's configuration differs from the stream's; the stream is raised to this node's value")
		}
	}
}

// consume applies the stream to the local store until ctx ends,
// creating the stream and consumer first and starting over after any
// error.
func (n *Node) consume(ctx context.Context) {
	wait := 250 * time.Millisecond
	var lastLog time.Time
	for ctx.Err() == nil {
		c, err := n.setup(ctx)
		if err == nil {
			n.ready.Store(true)
			wait = 250 * time.Millisecond
			err = n.applyLoop(ctx, c)
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(lastLog) > 30*time.Second {
			// The cluster forms as nodes start: the first errors are
			// expected, and a steady failure must not flood the log.
			n.log.Warn().Err(err).Msg("cluster: stream not ready; retrying")
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (n *Node) applyLoop(ctx context.Context, c jetstream.Consumer) error {
	// A pull request lost with a leader change is noticed by missing
	// heartbeats: within seconds, not the default half minute.
	it, err := c.Messages(jetstream.PullMaxMessages(2*applyBatch), jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second))
	if err != nil {
		return fmt.Errorf("consuming: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	batch := make([]jetstream.Msg, 0, applyBatch)
	for {
		m, err := it.Next()
		if err != nil {
			return fmt.Errorf("consuming: %w", err)
		}
		batch = append(batch[:0], m)
		// Whatever else is buffered joins the same transaction: one
		// fsync for a backlog, not one per record.
		for len(batch) < applyBatch {
			m, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		if err := n.apply(ctx, batch); err != nil {
			return err
		}
	}
}

// apply applies batch in stream order: the records between two
// operators' actions in one transaction each (see applyRecords), each
// action on its own after the records before it (applyOpMsg). When the
// store fails, the rest of the batch is handed back to come again.
func (n *Node) apply(ctx context.Context, batch []jetstream.Msg) error {
	start := 0
	for i, m := range batch {
		if !isOp(m) {
			continue
		}
		if !n.applyRecords(ctx, batch[start:i]) || !n.applyOpMsg(ctx, m) {
			n.nakWait(ctx, batch[i:])
			return nil
		}
		start = i + 1
	}
	if !n.applyRecords(ctx, batch[start:]) {
		n.nakWait(ctx, nil)
	}
	return nil
}

// nakWait hands msgs back (they come again after a second) and waits
// that second, after a store failure.
func (n *Node) nakWait(ctx context.Context, msgs []jetstream.Msg) {
	for _, m := range msgs {
		m.NakWithDelay(time.Second)
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
}

// applyRecords stores the records of batch that this node does not hold
// yet, in one transaction, then acknowledges them. A record that cannot
// be decoded is terminated (it will never decode) and logged: it is lost
// on this node only, and the metric says so. It returns false when the
// store failed (the records were handed back).
func (n *Node) applyRecords(ctx context.Context, batch []jetstream.Msg) bool {
	var entries []store.Entry
	var good []jetstream.Msg
	for _, m := range batch {
		es, err := DecodeRecord(m.Data())
		if err != nil {
			n.damaged(m, err)
			continue
		}
		entries = append(entries, es...)
		good = append(good, m)
	}
	if len(entries) > 0 {
		stored, err := n.putNew(entries)
		if err != nil {
			for _, m := range good {
				m.NakWithDelay(time.Second)
			}
			n.log.Error().Err(err).Msg("cluster: applying records to the store failed; retrying")
			return false
		}
		n.m.applied(resultStored, count(stored, true))
		n.m.applied(resultHeld, count(stored, false))
		var mine []store.Entry
		for i, ok := range stored {
			if !ok {
				continue
			}
			mine = append(mine, entries[i])
			if r := entries[i].Retract; r != nil {
				n.retract(r)
			}
			if r := entries[i].Report; r != nil && n.onApply != nil {
				n.onApply(r)
			}
		}
		if n.onStore != nil && len(mine) > 0 {
			n.onStore(mine)
		}
	}
	for _, m := range good {
		if err := m.Ack(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			// Redelivered later and applied as a no-op.
			n.log.Debug().Err(err).Msg("cluster: acknowledging a record")
		}
	}
	if len(good) > 0 {
		if meta, err := good[len(good)-1].Metadata(); err == nil {
			n.m.setLag(meta.NumPending)
		}
	}
	return true
}

// retract makes, in this node's store, the withdrawal a not-spam report
// made on the node that accepted it. The outcome may differ (a report
// sent meanwhile stays sent); it is logged, not stored.
func (n *Node) retract(r *store.Retraction) {
	out, err := n.st.Retract(*r, time.Now().UTC())
	if err != nil && !errors.Is(err, store.ErrNoMessageID) {
		n.log.Error().Err(err).Str("id", r.ID.String()).Msg("cluster: withdrawing the complaint a not-spam report retracts")
		return
	}
	if out.Withdrawn {
		n.log.Info().Str("id", r.ID.String()).Str("complaint", out.Complaint.String()).Msg("cluster: complaint withdrawn by a not-spam report accepted on another node")
	}
}

// putNew is store.PutNew without a write transaction when the store
// holds every entry already: the accepting node meets each of its own
// records again, and an empty commit would still cost an fsync.
func (n *Node) putNew(entries []store.Entry) ([]bool, error) {
	ids := make([]store.ID, len(entries))
	for i := range entries {
		ids[i] = entryID(&entries[i])
	}
	held, err := n.st.Held(ids)
	if err != nil {
		return nil, err
	}
	var fresh []store.Entry
	var at []int
	for i, h := range held {
		if !h {
			fresh = append(fresh, entries[i])
			at = append(at, i)
		}
	}
	stored := make([]bool, len(entries))
	if len(fresh) == 0 {
		return stored, nil
	}
	s, err := n.st.PutNew(fresh)
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		stored[i] = s[j]
	}
	return stored, nil
}

// Health is what /healthz reports of the cluster.
type Health struct {
	Node string `json:"node"`
	// OK: connected, the stream has a leader, the consumer exists.
	OK bool `json:"ok"`
	// Reason is a fixed phrase when not OK (never an error's text).
	Reason string `json:"reason,omitempty"`
	// StreamLeader names the NATS server leading the stream.
	StreamLeader string `json:"stream_leader,omitempty"`
	// Lag is how many records of the stream this node has not applied.
	Lag uint64 `json:"consumer_lag"`
	// ConfigMismatch names the nodes whose configuration fingerprint
	// differs from this node's (see Fingerprint); it does not make the
	// cluster unhealthy.
	ConfigMismatch []string  `json:"config_mismatch,omitempty"`
	Checked        time.Time `json:"checked"`
}

// Reasons of an unhealthy cluster state.
const (
	ReasonStarting     = "cluster starting"
	ReasonDisconnected = "not connected to NATS"
	ReasonNoStream     = "stream not ready"
	ReasonNoLeader     = "no stream leader"
	ReasonStale        = "cluster state unknown"
	ReasonClosed       = "cluster connection closed"
)

// Health returns the last status the monitor found.
func (n *Node) Health() Health {
	h := *n.health.Load()
	h.ConfigMismatch = n.mismatched()
	if h.OK && time.Since(h.Checked) > staleAfter {
		h.OK, h.Reason = false, ReasonStale
	}
	if n.closed.Load() {
		h.OK, h.Reason = false, ReasonClosed
	}
	return h
}

func (n *Node) monitor(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	var pruned time.Time
	for {
		n.check(ctx)
		if time.Since(pruned) > opPruneInterval {
			n.pruneOps()
			pruned = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) check(ctx context.Context) {
	h := &Health{Node: n.cfg.Node, Checked: time.Now()}
	defer func() {
		h.OK = h.Reason == ""
		n.health.Store(h)
		n.m.setHealthy(h.OK)
	}()
	if !n.nc.IsConnected() {
		h.Reason = ReasonDisconnected
		return
	}
	if !n.ready.Load() {
		h.Reason = ReasonNoStream
		return
	}
	ctx, cancel := context.WithTimeout(ctx, healthInterval)
	defer cancel()
	s, err := n.js.Stream(ctx, StreamName)
	if err != nil {
		h.Reason = ReasonNoLeader
		return
	}
	// A single server (nats.url) has no cluster info: its one replica
	// is current.
	current := 1
	if ci := s.CachedInfo().Cluster; ci != nil {
		h.StreamLeader = ci.Leader
		// A follower that rejoined is not current until it caught up
		// (seconds): until then the majority rests on the others.
		current = 0
		if ci.Leader != "" {
			current = 1
		}
		for _, r := range ci.Replicas {
			if r.Current && !r.Offline {
				current++
			}
		}
	}
	n.m.setCurrent(current)
	if h.StreamLeader == "" && n.cfg.Replicas > 1 {
		h.Reason = ReasonNoLeader
		return
	}
	if c, err := s.Consumer(ctx, n.cfg.Node); err == nil {
		h.Lag = c.CachedInfo().NumPending
		n.m.setLag(h.Lag)
	}
}

// String describes the node for logs.
func (n *Node) String() string {
	how := "nats.url " + strings.Split(n.cfg.NATS.URL, ",")[0]
	if n.srv != nil {
		how = "embedded NATS server " + n.srv.Name()
	}
	return fmt.Sprintf("node %s, %d replicas, sync %s, %s", n.cfg.Node, n.cfg.Replicas, n.cfg.Sync, how)
}
