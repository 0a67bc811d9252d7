package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xarfd/xarfd/cluster"
	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

// largeMaxPayload stands in for the 64 MiB of production: records of a
// few hundred KiB meet the same limit, read from the connection.
const largeMaxPayload = 1 << 20

// threeChannels routes one message to two channels that store it as it
// is and one that redacts it.
const threeChannels = `hostname: mx.example.net
sender: {org: Example, contact: abuse@example.net, domain: example.net}
channels:
  - {name: plain, kind: trap, addresses: ["*@plain.example.net"]}
  - {name: plain2, kind: trap, addresses: ["*@plain2.example.net"]}
  - {name: trap, kind: trap, addresses: ["*@trap.example.net"], redact: {recipients: true}}
`

// ingester accepts messages on m for the three channels, through m's
// node as a daemon does (the nodes apply records whatever channels they
// are configured with).
func ingester(t *testing.T, m *clustertest.Member) (*config.Config, *ingest.Ingester) {
	t.Helper()
	cfg, err := config.Parse([]byte(threeChannels+"data_dir: "+t.TempDir()+"\n"), "three.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, m.Store, ingest.Options{Replicator: m.Node})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, in
}

// bigMessage is a trap hit of about size bytes addressed to the three
// channels' recipients.
func bigMessage(marker string, size int) []byte {
	head := "Received: from spam.example (spam.example [192.88.99.10]) by mx.example.net with ESMTP; Fri, 27 Nov 2026 10:00:00 +0000\r\n" +
		"From: Spammer <spammer@spam.example>\r\nTo: victim@trap.example.net, a@plain.example.net, b@plain2.example.net\r\n" +
		"Subject: " + marker + "\r\nMessage-ID: <" + marker + "@spam.example>\r\n\r\n"
	line := "buy now buy now buy now buy now buy now buy now buy now buy now\r\n"
	return []byte(head + strings.Repeat(line, size/len(line)))
}

func deliveries(cfg *config.Config, channels ...string) []ingest.Delivery {
	rcpt := map[string]string{"plain": "a@plain.example.net", "plain2": "b@plain2.example.net", "trap": "victim@trap.example.net"}
	var out []ingest.Delivery
	for _, ch := range channels {
		out = append(out, ingest.Delivery{Channel: cfg.Channel(ch), Rcpts: []string{rcpt[ch]}})
	}
	return out
}

func largeEnv() store.Envelope {
	return store.Envelope{PeerIP: netip.MustParseAddr("192.0.2.1"), PeerPort: 25, MailFrom: "s@spam.example", Via: "smtp"}
}

// rawOn says why m does not hold want as the bytes of id ("" when it
// does).
func rawOn(m *clustertest.Member, id store.ID, want []byte) string {
	got, err := m.Store.Raw(id)
	if err != nil {
		return fmt.Sprintf("%s: %s: %v", m.Name, id, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Sprintf("%s: %s: %d bytes differ from the accepting node's %d", m.Name, id, len(got), len(want))
	}
	return ""
}

func tooLargeCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "xarfd_cluster_records_too_large_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no xarfd_cluster_records_too_large_total")
	return 0
}

// lastVersion is the record version of the last record on subject.
func lastVersion(t *testing.T, m *clustertest.Member, channel string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := m.Node.JetStream().Stream(ctx, cluster.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, cluster.SubjectPrefix+channel)
	if err != nil {
		t.Fatal(err)
	}
	return msg.Data[3]
}

// A message to three channels near the servers' max_payload: two of them
// store the same bytes, which the record carries once, so it is accepted
// and every node holds each channel's bytes; the redacting channel's
// differ. A larger one, whose record cannot fit even so, is refused as
// too large (552 in SMTP), counted, and stored nowhere; the same message
// to one channel fits.
func TestLargeMultiChannelRecord(t *testing.T) {
	c := clustertest.StartMaxPayload(t, 3, 3, largeMaxPayload)
	c.WaitHealthy(60 * time.Second)
	a := c.Members[0]
	cfg, in := ingester(t, a)
	// A node of an older version is listed: records are version 1
	// where they fit, and version 2 only where version 1 cannot be
	// published at all.
	kv := nodesKV(t, a)
	if _, err := kv.Put(context.Background(), "nodes.old", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, a, cfg, in, 1, "version 1 with an older node listed")

	// Three copies of 400 KiB do not fit in 1 MiB; two do.
	msg := bigMessage("fits-shared", 400<<10)
	res, err := in.Accept(largeEnv(), deliveries(cfg, "plain", "trap", "plain2"), msg)
	if err != nil {
		t.Fatalf("a message to three channels, two copies near the limit: %v", err)
	}
	if len(res) != 3 || !res[0].Report || !res[1].Report || res[1].Redaction.Addresses() == 0 {
		t.Fatalf("results %+v: want three reports, the trap one redacted", res)
	}
	plain, err := a.Store.Raw(res[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	trap, err := a.Store.Raw(res[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(plain, trap) || bytes.Contains(trap, []byte("victim@trap.example.net")) {
		t.Fatal("the trap channel's bytes are not redacted")
	}
	if v := lastVersion(t, a, "plain"); v != 2 {
		t.Errorf("record version %d, want 2 (shared bytes)", v)
	}
	for _, m := range c.Members {
		for i, want := range [][]byte{plain, trap, plain} {
			clustertest.Eventually(t, 30*time.Second, "entry on "+m.Name, func() string { return rawOn(m, res[i].ID, want) })
		}
	}

	// Two copies of 600 KiB do not fit: refused, permanently.
	before, _ := a.Store.Count()
	big := bigMessage("too-large", 600<<10)
	_, err = in.Accept(largeEnv(), deliveries(cfg, "plain", "trap", "plain2"), big)
	if !errors.Is(err, ingest.ErrTooLarge) || errors.Is(err, store.ErrCommit) {
		t.Fatalf("a record over max_payload: %v, want ingest.ErrTooLarge and not store.ErrCommit", err)
	}
	if after, _ := a.Store.Count(); after != before {
		t.Errorf("the refused message left %d records on the accepting node", after-before)
	}
	if got := tooLargeCount(t, a.Registry); got != 1 {
		t.Errorf("xarfd_cluster_records_too_large_total = %v, want 1", got)
	}

	// The same message to one channel fits.
	res, err = in.Accept(largeEnv(), deliveries(cfg, "plain"), big)
	if err != nil {
		t.Fatalf("the large message to one channel: %v", err)
	}
	for _, m := range c.Members {
		clustertest.Eventually(t, 30*time.Second, "single entry on "+m.Name, func() string { return rawOn(m, res[0].ID, big) })
	}
}

// Version 2 is written for any record with shared bytes once every node
// says it reads it (records.<node> in the nodes bucket), and not while a
// node of an older version, which has a fingerprint but says nothing,
// is listed: it would skip the record.
func TestSharedRecordsWaitForEveryNode(t *testing.T) {
	c := clustertest.Start(t, 3, 3)
	c.WaitHealthy(60 * time.Second)
	a := c.Members[0]
	cfg, in := ingester(t, a)
	waitVersion(t, a, cfg, in, 2, "version 2 once the nodes said they read it")

	ctx := context.Background()
	kv := nodesKV(t, a)
	if _, err := kv.Put(ctx, "nodes.old", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, a, cfg, in, 1, "version 1 with an older node listed")
	if _, err := kv.Put(ctx, "records.old", []byte("2")); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, a, cfg, in, 2, "version 2 once the older node was upgraded")
	// Downgraded: its records key goes, its fingerprint stays.
	if err := kv.Delete(ctx, "records.old"); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, a, cfg, in, 1, "version 1 once the node was downgraded")
	if err := kv.Delete(ctx, "nodes.old"); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, a, cfg, in, 2, "version 2 once the older node was removed")
}

func nodesKV(t *testing.T, m *clustertest.Member) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := m.Node.JetStream().KeyValue(ctx, cluster.NodesBucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// waitVersion accepts small messages to two channels that store the
// same bytes on m until their record has version want.
func waitVersion(t *testing.T, m *clustertest.Member, cfg *config.Config, in *ingest.Ingester, want byte, what string) {
	t.Helper()
	clustertest.Eventually(t, 30*time.Second, what, func() string {
		if _, err := in.Accept(largeEnv(), deliveries(cfg, "plain", "plain2"), bigMessage("small", 2<<10)); err != nil {
			return err.Error()
		}
		if v := lastVersion(t, m, "plain"); v != want {
			return fmt.Sprintf("version %d", v)
		}
		return ""
	})
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// xarfd_cluster_stream_replicas_current counts the replicas caught up
// with the leader: all three while all run, fewer once one is gone.
func TestReplicasCurrentMetric(t *testing.T) {
	c := clustertest.Start(t, 3, 3)
	c.WaitHealthy(60 * time.Second)
	const name = "xarfd_cluster_stream_replicas_current"
	for _, m := range c.Members {
		clustertest.Eventually(t, 30*time.Second, name+" on "+m.Name, func() string {
			if v := gauge(t, m.Registry, name); v != 3 {
				return fmt.Sprintf("%v", v)
			}
			return ""
		})
	}
	gone := c.Members[2]
	c.Stop(gone)
	for _, m := range c.Members[:2] {
		clustertest.Eventually(t, 60*time.Second, name+" on "+m.Name+" with a node stopped", func() string {
			if v := gauge(t, m.Registry, name); v != 2 {
				return fmt.Sprintf("%v", v)
			}
			return ""
		})
	}
}
