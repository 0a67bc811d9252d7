package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
)

// mailbox is the subscribers' side: it records each notification.
type mailbox struct {
	mu  sync.Mutex
	got []string // recipient of each mail
}

func (b *mailbox) Send(_ context.Context, _ string, to []string, _ []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, strings.Join(to, ","))
	return nil
}

func (b *mailbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

func casesConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	leases := filepath.Join(dir, "leases.csv")
	if err := os.WriteFile(leases, []byte("ip,port_first,port_last,start,end,subscriber_id,email\n192.0.2.10,,,2026-11-01T00:00:00Z,,alice,alice@home.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
hostname: cases.test
sender: {org: Home ISP, contact: abuse@home.example, domain: home.example}
own_networks: ["192.0.2.0/24"]
channels:
  - {name: fbl, kind: arf, addresses: [fbl@cases.test], uses: [own, store]}
subscribers:
  assignments_file: `+leases+`
  notify: {enabled: true, from: abuse@home.example, min_interval: 24h}
  restrict: {after: {reports: 0, trap_hits: 0}}
`), "cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func complaintAbout(ip string, at time.Time, n int) []byte {
	return []byte(fmt.Sprintf("From: FBL <fbl@isp.example>\r\nTo: fbl@cases.test\r\nSubject: FW: spam\r\nDate: %[2]s\r\nMessage-ID: <c%[3]d@isp.example>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n"+
		"--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ExampleFBL/2.0\r\nVersion: 1\r\nArrival-Date: %[2]s\r\nSource-IP: %[1]s\r\n\r\n"+
		"--b1\r\nContent-Type: message/rfc822\r\n\r\nReceived: from pc.subscriber.example ([%[1]s]) by mx.isp.example; %[2]s\r\nFrom: Spammer <spam@subscriber.example>\r\nTo: Victim <victim@isp.example>\r\nSubject: pills %[3]d\r\nMessage-ID: <spam%[3]d@subscriber.example>\r\n\r\nbuy now\r\n--b1--\r\n",
		ip, at.Format(time.RFC1123Z), n))
}

// Two nodes' case managers hold the same case (each built it from the
// same reports): the subscriber gets one notification, and the node
// that did not send it records who did; the next digest after
// min_interval is again sent once.
func TestTwoCaseManagersNotifyOnce(t *testing.T) {
	s := startNATS(t)
	cfg := casesConfig(t, t.TempDir())
	dirA, dirB := t.TempDir(), t.TempDir()
	st, err := store.Open(dirA, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	complain := func(in *ingest.Ingester, n int) {
		t.Helper()
		res, err := in.Accept(store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), MailFrom: "fbl@isp.example", Via: "smtp"},
			[]ingest.Delivery{{Channel: cfg.Channel("fbl"), Rcpts: []string{"fbl@cases.test"}}}, complaintAbout("192.0.2.10", at.Add(time.Duration(n)*time.Minute), n))
		if err != nil || !res[0].Report {
			t.Fatalf("ingest: %v %+v", err, res)
		}
	}
	complain(in, 1)
	complain(in, 2)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dirA, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, store.FileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}

	box := &mailbox{}
	var mu sync.Mutex
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	type nodeEnv struct {
		st *store.Store
		in *ingest.Ingester
		m  *cases.Manager
	}
	var nodes []nodeEnv
	for i, dir := range []string{dirA, dirB} {
		st := storetest.Open(t, dir)
		in, err := ingest.New(cfg, st, ingest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		claims, _ := node(t, s, fmt.Sprintf("mx%d", i+1), metrics.New())
		// The case managers run on a test clock; so do the records.
		claims.opt.Kind, claims.opt.Window, claims.opt.Now = metrics.ClaimNotification, claims.opt.Horizon, clock
		m, err := cases.New(cfg, st, cases.Options{Mailer: box, Claims: claims, Now: clock,
			Logger: zerolog.New(zerolog.NewTestWriter(t))})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nodeEnv{st, in, m})
	}
	// due runs Step and Due on both nodes at once, until both recorded a
	// notification of total reports.
	due := func(total int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("both nodes notified of %d reports", total), func() (bool, string) {
			var wg sync.WaitGroup
			for _, n := range nodes {
				wg.Go(func() {
					for more := true; more; {
						more, _ = n.m.Step(context.Background())
					}
					_ = n.m.Due(context.Background())
				})
			}
			wg.Wait()
			// A node that lost the race asks again a minute later.
			mu.Lock()
			now = now.Add(2 * time.Minute)
			mu.Unlock()
			var state []string
			ok := true
			for _, n := range nodes {
				var c *store.Case
				n.st.ForEachCase(func(x *store.Case) error {
					if x.Key == "subscriber:alice" && c == nil {
						c = x
					}
					return nil
				})
				if c == nil || c.NotifiedUpTo != total {
					ok = false
				}
				if c != nil {
					state = append(state, fmt.Sprintf("notified up to %d, %d notifications", c.NotifiedUpTo, len(c.Notifications)))
				}
			}
			return ok, strings.Join(state, "; ")
		})
	}
	due(2)
	if got := box.count(); got != 1 {
		t.Fatalf("%d notifications of the first digest, want 1", got)
	}
	elsewhere := 0
	for _, n := range nodes {
		n.st.ForEachCase(func(c *store.Case) error {
			for _, d := range c.Notifications {
				if strings.HasPrefix(d.Result, "sent by cluster node mx") {
					elsewhere++
				}
			}
			return nil
		})
	}
	if elsewhere != 1 {
		t.Errorf("%d nodes record the digest as sent by the other, want 1", elsewhere)
	}

	// A third report reaches both nodes; after min_interval one digest.
	for _, n := range nodes {
		complain(n.in, 3)
	}
	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	due(3)
	if got := box.count(); got != 2 {
		t.Fatalf("%d notifications after the second digest, want 2", got)
	}
}
