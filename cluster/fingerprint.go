package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xarfd/xarfd/config"
)

// NodesBucket is the KV bucket where each node publishes its
// configuration's fingerprint under its name (key nodes.<node>), and the
// newest record version it decodes (key records.<node>; a node without
// one reads version 1 only).
const NodesBucket = "xarfd_nodes"

// Fingerprint is a node's configuration as hashes, one per part that
// must be the same on every node: "channels" (names and kinds),
// "redaction" (what each channel redacts, its mode and a hash of its
// HMAC key: nodes with different keys make different pseudonyms),
// "retention" and "reporter" (its settings, without secrets or file
// paths). A hash, never a value: the KV bucket is readable by anyone
// with access to the NATS account, and a key must not leak from it.
type Fingerprint map[string]string

// ConfigFingerprint is cfg's fingerprint; res holds the HMAC keys.
func ConfigFingerprint(cfg *config.Config, res *config.Resources) Fingerprint {
	type channel struct {
		Name, Kind string
	}
	type redaction struct {
		Channel    string
		Recipients bool
		Addresses  []string
		Domains    []string
		LocalParts bool
		Mode       string
		Key        string // SHA-256 of the key
	}
	var chans []channel
	var red []redaction
	ret := map[string]time.Duration{"retention_orphaned": cfg.RetentionOrphaned.D()}
	for _, ch := range cfg.Channels {
		chans = append(chans, channel{ch.Name, string(ch.Kind)})
		ret[ch.Name] = ch.Retention.D()
		if !ch.Redact.Enabled() {
			continue
		}
		r := ch.Redact
		rd := redaction{Channel: ch.Name, Recipients: r.Recipients, Addresses: r.Addresses, Domains: r.Domains, LocalParts: r.LocalParts, Mode: r.Mode}
		if res != nil {
			if k := res.HMACKeys[ch.Name]; len(k) > 0 {
				sum := sha256.Sum256(k)
				rd.Key = hex.EncodeToString(sum[:])
			}
		}
		red = append(red, rd)
	}
	rp := cfg.Reporter
	reporter := map[string]any{
		"enabled": rp.Enabled, "from": rp.From, "format": rp.Format,
		"smarthost":            []string{rp.Smarthost.Address, rp.Smarthost.Username, rp.Smarthost.TLS},
		"dkim":                 []string{rp.DKIM.Domain, rp.DKIM.Selector},
		"per_contact_per_hour": rp.PerContactPerHour, "max_recipients_per_report": rp.MaxRecipientsPerReport,
		"retry": []time.Duration{rp.Retry.First.D(), rp.Retry.GiveUpAfter.D()}, "max_age": rp.MaxAge.D(),
	}
	if cl := cfg.Cluster; cl != nil && cl.ClaimLease.D() != config.DefaultClusterClaimLease {
		// The claim bucket's max age derives from the lease, and every
		// node sets it. Only a lease other than the default is part of
		// the hash, so that nodes of a version without the key, which
		// run on the default, do not look different during an upgrade.
		reporter["claim_lease"] = cl.ClaimLease.D()
	}
	return Fingerprint{
		"channels":  hashJSON(chans),
		"redaction": hashJSON(red),
		"retention": hashJSON(ret),
		"reporter":  hashJSON(reporter),
	}
}

// hashJSON is a short hash of v's JSON (map keys come sorted).
func hashJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain values above: cannot happen.
		panic(fmt.Sprintf("cluster: fingerprint: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Differs names the parts where f and other differ, sorted.
func (f Fingerprint) Differs(other Fingerprint) []string {
	var parts []string
	for k, v := range f {
		if other[k] != v {
			parts = append(parts, k)
		}
	}
	for k := range other {
		if _, ok := f[k]; !ok {
			parts = append(parts, k)
		}
	}
	sort.Strings(parts)
	return parts
}

// watchNodes publishes this node's fingerprint and follows the others'
// until ctx ends, starting over after an error.
func (n *Node) watchNodes(ctx context.Context) {
	wait := time.Second
	for ctx.Err() == nil {
		err := n.publishFingerprint(ctx)
		if ctx.Err() != nil {
			return
		}
		n.log.Debug().Err(err).Msg("cluster: following the nodes' configuration fingerprints; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (n *Node) publishFingerprint(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	kv, err := n.js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket:      NodesBucket,
		Description: "xarfd: each node's configuration fingerprint",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if err == nil {
		var b []byte
		b, err = json.Marshal(n.fp)
		if err == nil {
			_, err = kv.Put(cctx, "nodes."+n.cfg.Node, b)
		}
		if err == nil {
			_, err = kv.Put(cctx, "records."+n.cfg.Node, []byte(strconv.Itoa(recordVersionShared)))
		}
	}
	cancel()
	if err != nil {
		return err
	}
	// A new watcher replays every key: what was deleted meanwhile must
	// not linger (versions above all, which decide the record layout).
	n.peersMu.Lock()
	n.members, n.reads, n.membersKnown = map[string]bool{}, map[string]int{}, false
	n.peersMu.Unlock()
	w, err := kv.WatchFiltered(ctx, []string{"nodes.*", "records.*"})
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watcher stopped")
			}
			if e == nil { // the initial values are in
				n.peersMu.Lock()
				n.membersKnown = true
				n.peersMu.Unlock()
				continue
			}
			if node, ok := strings.CutPrefix(e.Key(), "records."); ok {
				n.noteReads(node, e.Operation(), e.Value())
				continue
			}
			n.noteFingerprint(strings.TrimPrefix(e.Key(), "nodes."), e.Operation(), e.Value())
		}
	}
}

// noteFingerprint records another node's fingerprint and warns when it
// differs from this node's (once per node and difference).
func (n *Node) noteFingerprint(node string, op jetstream.KeyValueOp, value []byte) {
	n.peersMu.Lock()
	if op == jetstream.KeyValuePut {
		n.members[node] = true
	} else {
		delete(n.members, node)
	}
	n.peersMu.Unlock()
	if node == n.cfg.Node {
		return
	}
	var diff []string
	if op == jetstream.KeyValuePut {
		var fp Fingerprint
		if err := json.Unmarshal(value, &fp); err != nil {
			diff = []string{"unreadable"}
		} else {
			diff = n.fp.Differs(fp)
		}
	}
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	was, known := n.peers[node]
	if len(diff) == 0 {
		delete(n.peers, node)
		if known {
			n.log.Info().Str("peer", node).Msg("cluster: the node's configuration now matches this node's")
		}
		return
	}
	n.peers[node] = diff
	if !slices.Equal(was, diff) {
		n.log.Warn().Str("peer", node).Strs("differs", diff).
			Msg("cluster: another node's configuration differs from this node's (channels, redaction, retention or reporter): keep them the same on every node")
	}
}

// noteReads records the newest record version node decodes.
func (n *Node) noteReads(node string, op jetstream.KeyValueOp, value []byte) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	v, err := strconv.Atoi(string(value))
	if op != jetstream.KeyValuePut || err != nil {
		delete(n.reads, node)
		return
	}
	n.reads[node] = v
}

// sharedReadable says whether every node known to the bucket decodes
// record version 2. Until the watcher has read the bucket once, and
// while any node has not said so (an older version), it is false.
func (n *Node) sharedReadable() bool {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	if !n.membersKnown {
		return false
	}
	for m := range n.members {
		if m != n.cfg.Node && n.reads[m] < recordVersionShared {
			return false
		}
	}
	return true
}

// mismatched lists the nodes whose configuration differs, sorted.
func (n *Node) mismatched() []string {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	var out []string
	for k := range n.peers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
