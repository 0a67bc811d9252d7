package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/xarfd/xarfd/store"
)

// The real binary with a reporter whose every delivery fails. The
// daemon must neither spin nor flood its log: each case counts the
// reporter's log lines and the desk's calls over the run, and prints the
// log lines per minute it measured.

// refusingDesk is a smarthost (go-smtp on 127.0.0.1) that accepts every
// recipient and answers err to every DATA, counting the attempts.
type refusingDesk struct {
	err   *smtp.SMTPError
	calls atomic.Int64
}

func (d *refusingDesk) NewSession(*smtp.Conn) (smtp.Session, error) { return refusingSession{d}, nil }

type refusingSession struct{ d *refusingDesk }

func (refusingSession) Reset()                               {}
func (refusingSession) Logout() error                        { return nil }
func (refusingSession) Mail(string, *smtp.MailOptions) error { return nil }
func (refusingSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s refusingSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	s.d.calls.Add(1)
	return s.d.err
}

func startRefusingDesk(t *testing.T, code int, enh smtp.EnhancedCode) (*refusingDesk, string) {
	t.Helper()
	d := &refusingDesk{err: &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: "no"}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(d)
	srv.Domain = "smarthost.e2e.example"
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return d, l.Addr().String()
}

// reporterLines counts the log lines of the reporter component.
func reporterLines(logs string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		var ev struct{ Component string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Component == "reporter" {
			n++
		}
	}
	return n
}

const failingReports = 20

// runFailing starts the daemon with the reporter section extra, sends
// failingReports distinct trap hits, and waits until done holds for the
// outbox or window passes; it returns the outbox, the reporter's log
// lines and the time they took.
func runFailing(t *testing.T, extra string, window time.Duration, done func([]store.OutboxEntry) bool) (*daemon, string, []store.OutboxEntry, int, time.Duration) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeConfig(t, dir, baseConfig+extra)
	dm := startDaemon(t, dir, "-config", cfg)
	base := httpAddr(t, dm)
	start := time.Now()
	for i := range failingReports {
		body := spamHit(e2eOrigin2, "t@trap.e2e.example", fmt.Sprintf("spam %d", i), fmt.Sprintf("distinct body %d", i))
		if _, err := send(dm.addr, "bounce@spam.example", []string{"t@trap.e2e.example"}, body); err != nil {
			t.Fatal(err)
		}
	}
	var es []store.OutboxEntry
	for {
		es = outbox(t, base)
		if (done != nil && done(es)) || time.Since(start) > window {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(start)
	return dm, base, es, reporterLines(dm.logs.String()), took
}

func perMinute(n int, d time.Duration) float64 { return float64(n) * float64(time.Minute) / float64(d) }

func allStatus(es []store.OutboxEntry, s store.OutboxStatus) bool {
	if len(es) != failingReports {
		return false
	}
	for _, e := range es {
		if e.Status != s {
			return false
		}
	}
	return true
}

// A smarthost that answers 451 to everything: retried with a growing
// backoff, given up after give_up_after, logged a handful of times.
func TestFailingReporter451(t *testing.T) {
	desk, addr := startRefusingDesk(t, 451, smtp.EnhancedCode{4, 3, 0})
	dm, _, es, lines, took := runFailing(t, fmt.Sprintf(`
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1s, give_up_after: 12s}
  per_contact_per_hour: 1000
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@desk.e2e.example}]
`, addr), 60*time.Second, func(es []store.OutboxEntry) bool { return allStatus(es, store.OutboxFailed) })
	calls := desk.calls.Load()
	t.Logf("451 always: %d reports, %d desk calls, %d reporter log lines in %s (%.1f a minute if extrapolated; the steady state is in docs/operations.md)", failingReports, calls, lines, took.Round(time.Millisecond), perMinute(lines, took))
	for _, e := range es {
		if e.Status != store.OutboxFailed || !strings.Contains(e.Reason, "gave up") || !strings.Contains(e.LastError, "451") || e.Attempts < 2 {
			t.Fatalf("entry %+v", e)
		}
	}
	// 1 s·2^n ±20 % within 12 s: at most 5 attempts each.
	if calls > failingReports*6 {
		t.Errorf("desk calls %d, want at most %d", calls, failingReports*6)
	}
	// One "deferred" and one "given up" line (repeats are counted, not
	// logged, within a minute), with slack for a summary line.
	if lines > 6 {
		t.Errorf("%d reporter log lines, want at most 6:\n%s", lines, tail(dm.logs.String(), 30))
	}
	dm.stop()
}

// A smarthost that answers 550: one attempt each, failed, one log line;
// then the API's retry sends one again, and its cancel refuses a failed
// entry.
func TestFailingReporter550(t *testing.T) {
	desk, addr := startRefusingDesk(t, 550, smtp.EnhancedCode{5, 7, 1})
	dm, base, es, lines, took := runFailing(t, fmt.Sprintf(`
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1s, give_up_after: 1h}
contacts:
  static: [{network: "192.88.99.0/24", email: abuse@desk.e2e.example}]
`, addr), 60*time.Second, func(es []store.OutboxEntry) bool { return allStatus(es, store.OutboxFailed) })
	// Watch a little longer: a retry or a spin would show now.
	time.Sleep(3 * time.Second)
	took += 3 * time.Second
	lines = reporterLines(dm.logs.String())
	calls := desk.calls.Load()
	t.Logf("550 always: %d reports, %d desk calls, %d reporter log lines in %s (%.1f a minute if extrapolated; the steady state is in docs/operations.md)", failingReports, calls, lines, took.Round(time.Millisecond), perMinute(lines, took))
	if calls != failingReports {
		t.Errorf("desk calls %d, want %d", calls, failingReports)
	}
	for _, e := range es {
		if e.Attempts != 1 || !strings.Contains(e.LastError, "550") {
			t.Fatalf("entry %+v", e)
		}
	}
	if lines > 3 {
		t.Errorf("%d reporter log lines, want at most 3:\n%s", lines, tail(dm.logs.String(), 30))
	}

	id := es[0].ID.String()
	if r := apiDo(t, "POST", base+"/api/v1/outbox/"+id+"/cancel", "", "application/json", nil); r.code != 409 {
		t.Fatalf("cancel of a failed entry: %d %s", r.code, r.body)
	}
	if r := apiDo(t, "POST", base+"/api/v1/outbox/"+id+"/retry", "", "application/json", []byte(`{"reason":"desk asked for it"}`)); r.code != 200 {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for desk.calls.Load() != failingReports+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the retried entry was not attempted: %d calls", desk.calls.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		var e store.OutboxEntry
		r := apiDo(t, "GET", base+"/api/v1/outbox?status=failed", "", "", nil)
		var p outboxPage
		json.Unmarshal(r.body, &p)
		for _, x := range p.Entries {
			if x.ID.String() == id {
				e = x
			}
		}
		if e.Attempts == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retried entry not failed again: %+v", e)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dm.stop()
}

// The abuse-contact zone's server answers SERVFAIL: entries wait with a
// growing backoff, nothing is sent or stuck, the log stays quiet.
func TestFailingReporterDNS(t *testing.T) {
	var queries atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	desk, addr := startRefusingDesk(t, 250, smtp.EnhancedCode{2, 0, 0})
	dm, _, es, lines, took := runFailing(t, fmt.Sprintf(`
resolver: %q
reporter:
  enabled: true
  from: reports@e2e.example
  smarthost: {address: %q, tls: none}
  retry: {first: 1s, give_up_after: 1h}
contacts:
  dns_zones: ["abuse.e2e.example"]
`, pc.LocalAddr().String(), addr), 15*time.Second, nil)
	t.Logf("SERVFAIL: %d reports, %d DNS queries, %d reporter log lines in %s (%.1f a minute if extrapolated; the steady state is in docs/operations.md)", failingReports, queries.Load(), lines, took.Round(time.Millisecond), perMinute(lines, took))
	for _, e := range es {
		// Pending, or claimed right now (a lookup in flight) with a lease.
		waiting := e.Status == store.OutboxPending || (e.Status == store.OutboxSending && e.LeaseUntil.After(time.Now()))
		if !waiting || e.Retries < 2 || !strings.Contains(e.LastError, "contact lookup") {
			t.Fatalf("entry %+v", e)
		}
	}
	if desk.calls.Load() != 0 {
		t.Fatalf("desk called %d times", desk.calls.Load())
	}
	if lines > 3 {
		t.Errorf("%d reporter log lines, want at most 3:\n%s", lines, tail(dm.logs.String(), 30))
	}
	dm.stop()
}
