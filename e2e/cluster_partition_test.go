package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sendTo sends one fresh message to node on a new session: its id on
// 250, else the error (an *smtp.SMTPError for a reply).
func sendTo(node *clusterNode, marker string) (string, []byte, error) {
	body := clusterMessage(marker)
	ids, err := send(node.smtp, "spammer@origin.example", []string{"hit@plain.e2e.example"}, body)
	if err != nil {
		return "", body, err
	}
	if len(ids) != 1 {
		return "", body, fmt.Errorf("250 with %d ids", len(ids))
	}
	return ids[0].String(), body, nil
}

// awaitAccepted sends to node until it answers 250 and returns what it
// accepted.
func awaitAccepted(t *testing.T, node *clusterNode, marker string) (string, acceptedMsg) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		id, body, err := sendTo(node, fmt.Sprintf("%s-%d", marker, i))
		if err == nil {
			return id, acceptedMsg{node: node.name, body: body}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept a message within 60s: %v", node.name, smtpErr(err))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClusterPartition: a node cut off from the other two (its routes
// closed by the proxy, its process, SMTP and HTTP still up) answers 451,
// never 250, while the two others, a quorum, keep accepting; once the
// partition heals it accepts again and serves what the others took
// meanwhile. First the stream leader is cut off (it must not acknowledge
// alone what it can no longer replicate), then a follower.
func TestClusterPartition(t *testing.T) {
	c := startCluster(t, 3, "")
	accepted := map[string]acceptedMsg{}
	for _, n := range c.nodes {
		id, a := awaitAccepted(t, n, "before-"+n.name)
		accepted[id] = a
	}
	for _, role := range []string{"leader", "follower"} {
		leader := c.leader()
		cut := leader
		if role == "follower" {
			cut = c.others(leader)[0]
		}
		c.net.isolate(cut.name)
		t0 := time.Now()
		// The majority elects a leader if it lost its own and goes on.
		for _, n := range c.others(cut) {
			id, a := awaitAccepted(t, n, "during-"+role+"-"+n.name)
			accepted[id] = a
		}
		majority := time.Since(t0)
		// Every attempt on the cut-off node gets 451; none a 250.
		t1 := time.Now()
		for i := range 3 {
			id, _, err := sendTo(cut, fmt.Sprintf("cut-%s-%d", role, i))
			var se *smtp.SMTPError
			if err == nil {
				t.Fatalf("%s, cut off from the quorum, accepted %s", cut.name, id)
			}
			if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
				t.Fatalf("%s, cut off: %v, want 451 4.3.0", cut.name, smtpErr(err))
			}
		}
		// It is alive all along: its HTTP API answers.
		if resp, err := http.Get(cut.base + "/api/v1/reports?limit=1"); err != nil {
			t.Fatalf("%s's API while cut off: %v", cut.name, err)
		} else {
			resp.Body.Close()
		}
		if k := c.net.links(cut.name); k != 0 {
			t.Fatalf("%s still has %d route connections", cut.name, k)
		}
		refusal := time.Since(t1) / 3
		c.net.heal(cut.name)
		t2 := time.Now()
		id, a := awaitAccepted(t, cut, "after-"+role)
		accepted[id] = a
		// For docs/cluster.md.
		t.Logf("cut off %s (%s): the others accepted after %v; it answered 451 in %v each; healed, it accepted after %v",
			cut.name, role, majority.Round(10*time.Millisecond), refusal.Round(10*time.Millisecond), time.Since(t2).Round(10*time.Millisecond))
	}
	var ref map[string]stored
	for _, n := range c.nodes {
		got := awaitReports(t, n, accepted)
		checkSame(t, n, got, ref, accepted)
		if ref == nil {
			ref = got
		}
	}
}
