package cluster_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xarfd/xarfd/cluster"
	"github.com/xarfd/xarfd/cluster/clustertest"
	"github.com/xarfd/xarfd/store"
)

// entry is what ingest stores for a converted report of channel fbl.
func entry(t testing.TB, body string) store.Entry {
	t.Helper()
	id, err := store.NewID()
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("Subject: " + body + "\r\n\r\n" + body)
	return store.Entry{
		Message: &store.Message{ID: id, Channel: "fbl", Size: len(raw), Status: store.StatusConverted,
			Envelope: store.Envelope{PeerIP: netip.MustParseAddr("192.0.2.1"), MailFrom: "a@b.example", ReceivedAt: time.Now().UTC(), Via: "smtp"}},
		Raw:    raw,
		Report: &store.Report{ID: id, Channel: "fbl", Via: "smtp", XARF: []byte(`{"report_id":"` + id.String() + `"}`)},
		Outbox: &store.OutboxEntry{ID: id, Channel: "fbl", Status: store.OutboxPending, Created: time.Now().UTC()},
	}
}

// has says why m does not hold e exactly ("" when it does).
func has(m *clustertest.Member, e store.Entry) string {
	raw, err := m.Store.Raw(e.Message.ID)
	if err != nil {
		return fmt.Sprintf("%s: %s: %v", m.Name, e.Message.ID, err)
	}
	if !bytes.Equal(raw, e.Raw) {
		return fmt.Sprintf("%s: %s: bytes differ", m.Name, e.Message.ID)
	}
	rep, err := m.Store.GetReport(e.Message.ID)
	if err != nil || !bytes.Equal(rep.XARF, e.Report.XARF) {
		return fmt.Sprintf("%s: report %s: %v", m.Name, e.Message.ID, err)
	}
	if _, err := m.Store.GetOutbox(e.Message.ID); err != nil {
		return fmt.Sprintf("%s: outbox %s: %v", m.Name, e.Message.ID, err)
	}
	return ""
}

func TestThreeNodes(t *testing.T) {
	c := clustertest.Start(t, 3, 3)
	a, b, cc := c.Members[0], c.Members[1], c.Members[2]
	start := time.Now()
	c.WaitHealthy(60 * time.Second)
	t.Logf("cluster healthy after %v", time.Since(start))

	var sent []store.Entry
	t.Run("publish on one node, read on all", func(t *testing.T) {
		e := entry(t, "one")
		stored, err := a.Node.Commit([]store.Entry{e})
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != 1 || !stored[0] {
			t.Errorf("Commit stored = %v", stored)
		}
		// The accepting node shows it at once.
		if why := has(a, e); why != "" {
			t.Fatal(why)
		}
		for _, m := range c.Members {
			clustertest.Eventually(t, 30*time.Second, "record on "+m.Name, func() string { return has(m, e) })
		}
		// Each node announces the report once: the accepting node
		// through ingest (Commit stored it), the others from their
		// consumer; the accepting node's consumer meets its own record
		// as held and announces nothing.
		announced := func(m *clustertest.Member, id store.ID) int {
			n := m.Applied(id)
			if m == a && id == e.Message.ID && stored[0] {
				n++
			}
			return n
		}
		for _, m := range c.Members {
			clustertest.Eventually(t, 30*time.Second, "report announced on "+m.Name, func() string {
				if n := announced(m, e.Message.ID); n != 1 {
					return fmt.Sprintf("%d times", n)
				}
				return ""
			})
		}
		// A marker published after it, by b, applied by a and c: their
		// consumers have passed the first record by then (stream order).
		marker := entry(t, "marker")
		if _, err := b.Node.Commit([]store.Entry{marker}); err != nil {
			t.Fatal(err)
		}
		for _, m := range []*clustertest.Member{a, cc} {
			clustertest.Eventually(t, 30*time.Second, "marker on "+m.Name, func() string {
				if m.Applied(marker.Message.ID) != 1 {
					return "not yet"
				}
				return ""
			})
		}
		for _, m := range c.Members {
			if n := announced(m, e.Message.ID); n != 1 {
				t.Errorf("%s: the report was announced %d times, want once", m.Name, n)
			}
		}
		sent = append(sent, e, marker)
	})

	t.Run("a retraction withdraws the complaint on every node", func(t *testing.T) {
		complaint := entry(t, "complaint")
		complaint.Report.XARF = []byte(`{"report_id":"` + complaint.Message.ID.String() + `","message_id":"<spam-1@origin.example>"}`)
		if _, err := a.Node.Commit([]store.Entry{complaint}); err != nil {
			t.Fatal(err)
		}
		// The not-spam report, accepted on b: ingest withdrew the
		// complaint there before publishing (as here by hand).
		notSpam := entry(t, "not spam")
		notSpam.Report, notSpam.Outbox = nil, nil
		notSpam.Message.Status = store.StatusQuarantined
		notSpam.Retract = &store.Retraction{ID: notSpam.Message.ID, Channel: "fbl", MessageID: "<spam-1@origin.example>"}
		clustertest.Eventually(t, 30*time.Second, "complaint on b", func() string { return has(b, complaint) })
		if _, err := b.Store.Retract(*notSpam.Retract, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Node.Commit([]store.Entry{notSpam}); err != nil {
			t.Fatal(err)
		}
		for _, m := range c.Members {
			clustertest.Eventually(t, 30*time.Second, "complaint withdrawn on "+m.Name, func() string {
				ob, err := m.Store.GetOutbox(complaint.Message.ID)
				if err != nil || ob.Status != store.OutboxWithdrawn {
					return fmt.Sprintf("%+v, %v", ob, err)
				}
				return ""
			})
		}
		sent = append(sent, complaint)
	})

	t.Run("a stopped node catches up after restart", func(t *testing.T) {
		c.Stop(cc)
		for i := range 5 {
			e := entry(t, fmt.Sprint("while down ", i))
			node := []*clustertest.Member{a, b}[i%2]
			// When the stopped node led the stream, the others elect a
			// new leader first: meanwhile a publish fails (451), and a
			// client tries again, as this does.
			clustertest.Eventually(t, 30*time.Second, "commit with 2 of 3 replicas", func() string {
				if _, err := node.Node.Commit([]store.Entry{e}); err != nil {
					return err.Error()
				}
				return ""
			})
			sent = append(sent, e)
		}
		c.Restart(cc)
		for _, e := range sent {
			clustertest.Eventually(t, 30*time.Second, "catch-up on "+cc.Name, func() string { return has(cc, e) })
		}
	})

	t.Run("a new node builds its read model from the whole stream", func(t *testing.T) {
		d := c.Add()
		for _, e := range sent {
			clustertest.Eventually(t, 60*time.Second, "read model of "+d.Name, func() string { return has(d, e) })
		}
		c.Stop(d)
	})

	t.Run("no quorum: the publish fails, nothing stored", func(t *testing.T) {
		c.Stop(b)
		c.Stop(cc)
		e := entry(t, "no quorum")
		stored, err := a.Node.Commit([]store.Entry{e})
		if err == nil || !errors.Is(err, cluster.ErrUnavailable) || !errors.Is(err, store.ErrCommit) {
			t.Fatalf("Commit without quorum = %v, %v; want ErrUnavailable", stored, err)
		}
		if _, err := a.Store.Message(e.Message.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a record the stream did not acknowledge was stored: %v", err)
		}
		clustertest.Eventually(t, 60*time.Second, "health says no leader", func() string {
			if h := a.Node.Health(); h.OK {
				return fmt.Sprintf("%+v", h)
			}
			return ""
		})
	})
}
