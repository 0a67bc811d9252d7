package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// clusterLoad is SMTP clients sending to nodes until stopped, keeping
// every message that got a 250 under its id.
type clusterLoad struct {
	mu       sync.Mutex
	accepted map[string]acceptedMsg
	dup      []string
	refused  atomic.Int64 // 4xx replies
	broken   atomic.Int64 // connection errors
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

type acceptedMsg struct {
	node string
	body []byte
	at   time.Time // when the 250 came
}

func newClusterLoad(t *testing.T) *clusterLoad {
	l := &clusterLoad{accepted: map[string]acceptedMsg{}, stop: make(chan struct{})}
	t.Cleanup(l.halt)
	return l
}

func (l *clusterLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// run starts k clients against node, each on one session that it
// reopens when the connection breaks.
func (l *clusterLoad) run(node *clusterNode, k int) {
	addr := node.smtp
	for w := range k {
		l.wg.Go(func() {
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if c == nil {
					var err error
					if c, err = smtp.Dial(addr); err == nil {
						err = c.Hello("client.e2e.example")
					}
					if err != nil {
						l.broken.Add(1)
						if c != nil {
							c.Close()
							c = nil
						}
						select {
						case <-l.stop:
							return
						case <-time.After(100 * time.Millisecond):
						}
						continue
					}
				}
				marker := fmt.Sprintf("%s-%d-%d-%d", node.name, w, seq, time.Now().UnixNano())
				body := clusterMessage(marker)
				id, err := sendOn(c, "spammer@origin.example", "hit@plain.e2e.example", body)
				var se *smtp.SMTPError
				switch {
				case err == nil:
					l.mu.Lock()
					if _, ok := l.accepted[id]; ok {
						l.dup = append(l.dup, id)
					}
					l.accepted[id] = acceptedMsg{node: node.name, body: body, at: time.Now()}
					l.mu.Unlock()
				case errors.As(err, &se) && se.Code/100 == 4:
					l.refused.Add(1)
					if c.Reset() != nil {
						c.Close()
						c = nil
					}
				default:
					l.broken.Add(1)
					c.Close()
					c = nil
				}
			}
		})
	}
}

func (l *clusterLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// clusterMessage is a relayed trap hit (a report with evidence) whose
// marker makes it unique.
func clusterMessage(marker string) []byte {
	return []byte("Received: from spam.origin.example (spam.origin.example [198.51.100.23]) by relay.other.example; Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
		"From: spammer@origin.example\r\nTo: hit@plain.e2e.example\r\nSubject: cluster " + marker + "\r\n" +
		"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <" + marker + "@origin.example>\r\n\r\nbuy now " + marker + "\r\n")
}

// sendOn sends one message with one recipient on an open session and
// returns the id of its 250.
func sendOn(c *smtp.Client, from, rcpt string, body []byte) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(body); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	ids, err := parseQueued(resp.StatusText)
	if err != nil || len(ids) != 1 {
		return "", fmt.Errorf("250 without one id: %q (%v)", resp.StatusText, err)
	}
	return ids[0].String(), nil
}

// stored is what a node serves of one report.
type stored struct{ xarf, evidence []byte }

// fetchReport gets report id and its evidence from node, or reports why
// not (not yet there).
func fetchReport(node *clusterNode, id string) (stored, error) {
	var s stored
	for _, p := range []struct {
		path string
		dst  *[]byte
	}{{"/api/v1/reports/" + id, &s.xarf}, {"/api/v1/reports/" + id + "/evidence", &s.evidence}} {
		resp, err := http.Get(node.base + p.path)
		if err != nil {
			return s, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return s, err
		}
		if resp.StatusCode != 200 {
			return s, fmt.Errorf("GET %s: %d", p.path, resp.StatusCode)
		}
		*p.dst = b
	}
	return s, nil
}

// awaitReports waits until node serves every accepted id and returns
// what it served.
func awaitReports(t *testing.T, node *clusterNode, accepted map[string]acceptedMsg) map[string]stored {
	t.Helper()
	got := map[string]stored{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var missing []string
		var firstErr error
		for id := range accepted {
			if _, ok := got[id]; ok {
				continue
			}
			s, err := fetchReport(node, id)
			if err != nil {
				if len(missing) == 0 {
					firstErr = err
				}
				missing = append(missing, id)
				continue
			}
			got[id] = s
		}
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %d of %d acknowledged reports after 60s (e.g. %s: %v)", node.name, len(missing), len(accepted), missing[0], firstErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkSame asserts that node served every accepted report as ref did,
// byte for byte, and that the evidence is the message that was sent.
func checkSame(t *testing.T, node *clusterNode, got, ref map[string]stored, accepted map[string]acceptedMsg) {
	t.Helper()
	bad := 0
	for id, a := range accepted {
		g := got[id]
		if !bytes.Contains(g.evidence, a.body) || !bytes.Contains(g.xarf, []byte(id)) {
			bad++
			if bad <= 3 {
				t.Errorf("%s: report %s (sent to %s) is not the message sent:\n%s\n%s", node.name, id, a.node, g.xarf, g.evidence)
			}
		}
		if r, ok := ref[id]; ok && (!bytes.Equal(r.xarf, g.xarf) || !bytes.Equal(r.evidence, g.evidence)) {
			bad++
			if bad <= 3 {
				t.Errorf("%s serves report %s differently from the first survivor:\n%s\n---\n%s", node.name, id, g.xarf, r.xarf)
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d reports differ in all", node.name, bad)
	}
}

// TestClusterFailover: clients send to all three nodes at once; one node
// is SIGKILLed mid-stream (the stream leader, or a follower); every id
// that got a 250 is served byte for byte by each survivor, and by the
// killed node after its restart.
func TestClusterFailover(t *testing.T) {
	for _, victim := range []string{"leader", "follower"} {
		t.Run(victim, func(t *testing.T) {
			c := startCluster(t, 3, "")
			load := newClusterLoad(t)
			for _, n := range c.nodes {
				load.run(n, 3)
			}
			waitCount(t, load, 30)
			leader := c.leader()
			dead := leader
			if victim == "follower" {
				dead = c.others(leader)[0]
			}
			before := load.count()
			c.kill(dead)
			killed := time.Now()
			t.Logf("killed %s (%s) after %d acknowledged messages", dead.name, victim, before)
			// The survivors keep acknowledging (a new leader once the
			// old one is gone).
			waitCount(t, load, before+30)
			load.halt()
			if len(load.dup) > 0 {
				t.Errorf("ids acknowledged twice: %v", load.dup)
			}
			// For docs/cluster.md: how long no client got a 250.
			var gap time.Duration
			last := killed
			for _, a := range sortedAccepts(load.accepted, killed) {
				gap = max(gap, a.Sub(last))
				last = a
			}
			t.Logf("%d acknowledged, %d refused with 4xx, %d broken sessions; longest time without a 250 after the kill: %v",
				len(load.accepted), load.refused.Load(), load.broken.Load(), gap.Round(10*time.Millisecond))

			var ref map[string]stored
			for _, n := range c.others(dead) {
				got := awaitReports(t, n, load.accepted)
				checkSame(t, n, got, ref, load.accepted)
				if ref == nil {
					ref = got
				}
			}
			c.restart(dead)
			got := awaitReports(t, dead, load.accepted)
			checkSame(t, dead, got, ref, load.accepted)
		})
	}
}

// waitCount waits until the load has n acknowledged messages.
func waitCount(t *testing.T, l *clusterLoad, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for l.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d messages acknowledged within 90s (%d refused, %d broken)", l.count(), n, l.refused.Load(), l.broken.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sortedAccepts are the times of the 250s after t, in order.
func sortedAccepts(acc map[string]acceptedMsg, t time.Time) []time.Time {
	var out []time.Time
	for _, a := range acc {
		if a.at.After(t) {
			out = append(out, a.at)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}
