package cluster_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/internal/ops"
	"github.com/xarfd/xarfd/store"
)

// mailbox is a subscriber's side: it counts each notification.
type mailbox struct {
	mu  sync.Mutex
	got int
}

func (b *mailbox) Send(context.Context, string, []string, []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got++
	return nil
}

func (b *mailbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got
}

func complaint(ip string, at time.Time, n int) []byte {
	return []byte(fmt.Sprintf("From: FBL <fbl@isp.example>\r\nTo: fbl@example.net\r\nSubject: FW: spam\r\nDate: %[2]s\r\nMessage-ID: <c%[3]d@isp.example>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n"+
		"--b1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: ExampleFBL/2.0\r\nVersion: 1\r\nArrival-Date: %[2]s\r\nSource-IP: %[1]s\r\n\r\n"+
		"--b1\r\nContent-Type: message/rfc822\r\n\r\nReceived: from pc.subscriber.example ([%[1]s]) by mx.isp.example; %[2]s\r\nFrom: Spammer <spam@subscriber.example>\r\nTo: Victim <victim@isp.example>\r\nSubject: pills %[3]d\r\nMessage-ID: <spam%[3]d@subscriber.example>\r\n\r\nbuy now\r\n--b1--\r\n",
		ip, at.Format(time.RFC1123Z), n))
}

type caseNodes struct {
	mu   sync.Mutex
	mgr  map[string]*cases.Manager
	mail map[string]*mailbox
}

func (c *caseNodes) of(m *clustertest.Member) (*cases.Manager, *mailbox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mgr[m.Name], c.mail[m.Name]
}

// openCase steps m's case worker until the case of key is there.
func (c *caseNodes) openCase(t *testing.T, m *clustertest.Member, key string) *store.Case {
	t.Helper()
	mgr, _ := c.of(m)
	var cs *store.Case
	clustertest.Eventually(t, 60*time.Second, "case on "+m.Name, func() string {
		if _, err := mgr.Step(context.Background()); err != nil {
			return err.Error()
		}
		var err error
		if cs, err = m.Store.OpenCase(key); err != nil {
			return err.Error()
		}
		return ""
	})
	return cs
}

// An operator's notify, restrict and resolve, each on another node,
// change the case alike on every node (state, history, webhook call,
// notification log); the notification mail is sent once, by the node
// that was asked.
func TestCaseActionsEveryNode(t *testing.T) {
	dir := t.TempDir()
	leases := filepath.Join(dir, "leases.csv")
	if err := os.WriteFile(leases, []byte("ip,port_first,port_last,start,end,subscriber_id,email\n192.0.2.10,,,2026-11-01T00:00:00Z,,alice,alice@home.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := `hostname: mx.example.net
sender: {org: Home ISP, contact: abuse@example.net, domain: example.net}
own_networks: ["192.0.2.0/24"]
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@example.net"], uses: [own, store]}
subscribers:
  assignments_file: ` + leases + `
  notify: {enabled: true, from: abuse@example.net, min_interval: 24h}
  restrict: {after: {reports: 0, trap_hits: 0}}
`
	cn := &caseNodes{mgr: map[string]*cases.Manager{}, mail: map[string]*mailbox{}}
	c := clustertest.StartOpsWith(t, 3, 3, base, func(m *clustertest.Member) ops.Applier {
		box := &mailbox{}
		mgr, err := cases.New(m.Cfg, m.Store, cases.Options{Mailer: box})
		if err != nil {
			t.Fatal(err)
		}
		cn.mu.Lock()
		cn.mgr[m.Name], cn.mail[m.Name] = mgr, box
		cn.mu.Unlock()
		return ops.Mux{ops.Case: mgr.ApplyOp}.Apply
	})
	for _, m := range c.Members {
		mgr, _ := cn.of(m)
		mgr.SetReplicator(m.Node, m.Name)
	}
	c.WaitHealthy(60 * time.Second)

	a := c.Members[0]
	in, err := ingest.New(a.Cfg, a.Store, ingest.Options{Replicator: a.Node})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for n := range 2 {
		res, err := in.Accept(store.Envelope{PeerIP: netip.MustParseAddr("127.0.0.1"), MailFrom: "fbl@isp.example", Via: "smtp"},
			[]ingest.Delivery{{Channel: a.Cfg.Channel("fbl"), Rcpts: []string{"fbl@example.net"}}}, complaint("192.0.2.10", at.Add(time.Duration(n)*time.Minute), n))
		if err != nil || !res[0].Report {
			t.Fatalf("ingest: %v %+v", err, res)
		}
	}
	const key = "subscriber:alice"
	// Only the asked node has its case made before the action; the
	// others make theirs when the action comes (ApplyOp catches up).
	for i, action := range []string{"notify", "restrict", "resolve"} {
		m := c.Members[(i+1)%3]
		mgr, _ := cn.of(m)
		cs := cn.openCase(t, m, key)
		out, err := mgr.Act(context.Background(), cs.ID, action, "token ops", "operator's "+action)
		if err != nil {
			t.Fatalf("%s on %s: %v", action, m.Name, err)
		}
		last := out.History[len(out.History)-1]
		if action == "restrict" {
			if out.Webhook == nil || out.Webhook.Reason != "operator's restrict" {
				t.Fatalf("restrict on %s: webhook %+v", m.Name, out.Webhook)
			}
		} else if last.Reason != "operator's "+action {
			t.Fatalf("%s on %s: last event %+v", action, m.Name, last)
		}
	}
	var ref *store.Case
	for _, m := range c.Members {
		clustertest.Eventually(t, 60*time.Second, "resolved on "+m.Name, func() string {
			mgr, _ := cn.of(m)
			_ = mgr
			cs, err := findCase(m.Store, key)
			if err != nil {
				return err.Error()
			}
			if cs.State != store.CaseResolved {
				return "state " + cs.State
			}
			return ""
		})
		cs, _ := findCase(m.Store, key)
		if ref == nil {
			ref = cs
			continue
		}
		if !reflect.DeepEqual(cs.History[1:], ref.History[1:]) {
			t.Errorf("history on %s differs from %s's:\n%+v\n%+v", m.Name, c.Members[0].Name, cs.History, ref.History)
		}
		if !reflect.DeepEqual(cs.Webhook, ref.Webhook) && (cs.Webhook == nil || ref.Webhook == nil || cs.Webhook.Created != ref.Webhook.Created || cs.Webhook.Action != ref.Webhook.Action) {
			t.Errorf("webhook on %s differs: %+v, %+v", m.Name, cs.Webhook, ref.Webhook)
		}
		if len(cs.Notifications) != 1 || len(ref.Notifications) != 1 || !cs.Notifications[0].At.Equal(ref.Notifications[0].At) {
			t.Errorf("notifications on %s: %+v, want one at %v", m.Name, cs.Notifications, ref.Notifications)
		}
	}
	mails := 0
	for _, m := range c.Members {
		_, box := cn.of(m)
		mails += box.count()
	}
	if _, box := cn.of(c.Members[1]); mails != 1 || box.count() != 1 {
		t.Errorf("%d notification mails, want 1 from %s (asked)", mails, c.Members[1].Name)
	}
	for _, m := range []*clustertest.Member{c.Members[0], c.Members[2]} {
		cs, _ := findCase(m.Store, key)
		if r := cs.Notifications[0].Result; !strings.Contains(r, "cluster node "+c.Members[1].Name) {
			t.Errorf("%s records the notification as %q", m.Name, r)
		}
	}
}

// findCase returns the case of key, resolved or not.
func findCase(st *store.Store, key string) (*store.Case, error) {
	var out *store.Case
	err := st.ForEachCase(func(cs *store.Case) error {
		if cs.Key == key {
			out = cs
		}
		return nil
	})
	if err == nil && out == nil {
		err = fmt.Errorf("no case of %s", key)
	}
	return out, err
}
