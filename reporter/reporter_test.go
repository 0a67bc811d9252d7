package reporter

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/internal/leakcheck"
	"github.com/xarfd/xarfd/reporter/contact"
	"github.com/xarfd/xarfd/store"
)

func TestDeliversOnceAfterTemporaryFailure(t *testing.T) {
	d := startDesk(t, func(call int) error {
		if call == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	})
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "trap", "victim@trap.reporter.test", originIP, "buy now")
	e.run(t, func() bool { return e.status(t, id) == store.OutboxSent })
	x := e.entry(t, id)
	if x.Attempts != 2 || x.Contact != "abuse@origin.test" || x.ContactSource != contact.SourceStatic {
		t.Fatalf("entry %+v", x)
	}
	got := d.messages()
	if len(got) != 1 {
		t.Fatalf("desk got %d messages, want 1", len(got))
	}
	if got[0].From != "reports@reporter.test" || len(got[0].To) != 1 || got[0].To[0] != "abuse@origin.test" {
		t.Fatalf("envelope %s -> %v", got[0].From, got[0].To)
	}
	for _, h := range []string{"Auto-Submitted: auto-generated", "Message-ID: <xarfd." + id.String() + "@reporter.test>", "Feedback-Type: xarf", "filename=\"xarf.json\""} {
		if !bytes.Contains(got[0].Data, []byte(h)) {
			t.Errorf("message lacks %q", h)
		}
	}
	leakcheck.Check(t, got[0].Data, []string{"victim@trap.reporter.test"})
}

func TestPermanentFailureIsNotRetried(t *testing.T) {
	d := startDesk(t, func(int) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "go away"}
	})
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "x")
	e.run(t, func() bool { return e.status(t, id) == store.OutboxFailed })
	time.Sleep(200 * time.Millisecond) // a retry would have come by now
	x := e.entry(t, id)
	if x.Attempts != 1 || !strings.Contains(x.LastError, "550") || d.calls != 1 {
		t.Fatalf("entry %+v, desk calls %d", x, d.calls)
	}
}

func TestDeskDownIsRetriedAndNothingLost(t *testing.T) {
	// Reserve a port, close it: connections are refused until the desk
	// starts there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e := setup(t, trapChannel+smarthostYAML(addr, true, ""), Options{})
	ids := []store.ID{
		e.trapHit(t, "trap", "a@trap.reporter.test", originIP, "one"),
		e.trapHit(t, "trap", "b@trap.reporter.test", "192.88.99.11", "two"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.rep.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for e.entry(t, ids[0]).Attempts < 2 || e.entry(t, ids[1]).Attempts < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no retries while the desk is down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, id := range ids {
		if x := e.entry(t, id); (x.Status != store.OutboxPending && x.Status != store.OutboxSending) || x.LastError == "" {
			t.Fatalf("while down: %+v", x)
		}
	}
	// The desk comes up on that port.
	dl, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	dk := &desk{addr: addr}
	dk.srv = smtp.NewServer(dk)
	go dk.srv.Serve(dl)
	defer dk.srv.Close()
	for e.status(t, ids[0]) != store.OutboxSent || e.status(t, ids[1]) != store.OutboxSent {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("not delivered after the desk came up: %+v", e.entry(t, ids[0]))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(dk.messages()); n != 2 {
		t.Fatalf("desk got %d, want 2", n)
	}
}

func TestGivesUpAfterGiveUpAfter(t *testing.T) {
	d := startDesk(t, func(int) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"}
	})
	e := setup(t, trapChannel+strings.Replace(smarthostYAML(d.addr, true, ""), "give_up_after: 1h", "give_up_after: 1s", 1), Options{})
	id := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "x")
	now := time.Now()
	clock := func() time.Time { return now }
	e.rep.opt.Now = clock
	x := e.entry(t, id)
	e.rep.process(context.Background(), x)
	if x = e.entry(t, id); x.Status != store.OutboxPending || x.Attempts != 1 {
		t.Fatalf("after first 4xx: %+v", x)
	}
	now = now.Add(2 * time.Second)
	e.rep.process(context.Background(), x)
	if x = e.entry(t, id); x.Status != store.OutboxFailed || !strings.Contains(x.Reason, "gave up") {
		t.Fatalf("after give_up_after: %+v", x)
	}
}

func TestPolicyWithholds(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, `own_networks: ["192.88.99.128/25"]`), Options{})
	private := e.trapHit(t, "trap", "a@trap.reporter.test", "10.1.2.3", "p")
	doc := e.trapHit(t, "trap", "a@trap.reporter.test", "198.51.100.7", "d")
	own := e.trapHit(t, "trap", "a@trap.reporter.test", "192.88.99.200", "o")
	nobody := e.trapHit(t, "trap", "a@trap.reporter.test", "192.88.98.1", "n") // public, no contact
	e.run(t, func() bool {
		for _, id := range []store.ID{private, doc, own, nobody} {
			if e.status(t, id) != store.OutboxWithheld {
				return false
			}
		}
		return true
	})
	for id, want := range map[store.ID]string{private: "private", doc: "reserved", own: "own_networks", nobody: "no abuse contact"} {
		if x := e.entry(t, id); !strings.Contains(x.Reason, want) {
			t.Errorf("%s: reason %q, want it to say %q", id, x.Reason, want)
		}
		if _, err := e.st.GetReport(id); err != nil {
			t.Errorf("withheld report not kept: %v", err)
		}
	}
	if n := len(d.messages()); n != 0 {
		t.Fatalf("desk got %d messages", n)
	}
}

func TestPartnersOnlyAndNoStore(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, `
channels:
  - name: partner
    kind: trap
    addresses: ["*@p.reporter.test"]
    redact: {recipients: true}
    uses: [report]
    report_to: ["desk@partner.test", "second@partner.test"]
`+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "partner", "v@p.reporter.test", originIP, "x")
	e.run(t, func() bool { return e.status(t, id) == store.OutboxSent })
	got := d.messages()
	if len(got) != 1 || strings.Join(got[0].To, ",") != "desk@partner.test,second@partner.test" {
		t.Fatalf("desk got %+v", got)
	}
	if bytes.Contains(got[0].Data, []byte("abuse@origin.test")) {
		t.Fatal("the origin's contact was addressed on a partners-only channel")
	}
	x := e.entry(t, id)
	if x.ContactSource != contact.SourcePartners || !x.DataDeleted {
		t.Fatalf("entry %+v", x)
	}
	if _, err := e.st.GetReport(id); err != store.ErrNotFound {
		t.Fatalf("report of a non-storing channel kept after delivery: %v", err)
	}
	if _, err := e.st.Raw(id); err != store.ErrNotFound {
		t.Fatalf("evidence of a non-storing channel kept after delivery: %v", err)
	}
}

func TestRateLimitOverflowWaits(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, "  per_contact_per_hour: 2\n"), Options{})
	var ids []store.ID
	for i := range 3 {
		ids = append(ids, e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "message "+string(rune('a'+i))))
	}
	e.run(t, func() bool {
		sent, waiting := 0, 0
		for _, id := range ids {
			x := e.entry(t, id)
			switch {
			case x.Status == store.OutboxSent:
				sent++
			case x.Status == store.OutboxPending && strings.Contains(x.Reason, "rate limit"):
				waiting++
			}
		}
		return sent == 2 && waiting == 1
	})
	if n := len(d.messages()); n != 2 {
		t.Fatalf("desk got %d, want 2", n)
	}
	// An hour later the third goes out.
	later := time.Now().Add(time.Hour + time.Minute)
	e.rep.opt.Now = func() time.Time { return later }
	e.run(t, func() bool {
		for _, id := range ids {
			if e.status(t, id) != store.OutboxSent {
				return false
			}
		}
		return true
	})
}

func TestDryRunRendersAndKeeps(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, false, ""), Options{})
	id := e.trapHit(t, "trap", "victim@trap.reporter.test", originIP, "x")
	e.run(t, func() bool { return e.status(t, id) == store.OutboxDryRun })
	x := e.entry(t, id)
	if !strings.Contains(x.Preview, "To: abuse@origin.test") || !strings.Contains(x.Preview, originIP) || x.MessageID == "" {
		t.Fatalf("preview %q", x.Preview)
	}
	raw, err := e.st.OutboxMail(id)
	if err != nil || !bytes.Contains(raw, []byte("xarf.json")) {
		t.Fatalf("rendered message not kept: %v", err)
	}
	leakcheck.Check(t, raw, []string{"victim@trap.reporter.test"})
	if n := len(d.messages()); n != 0 {
		t.Fatalf("dry run sent %d messages", n)
	}
}

func TestDuplicatesCountOnce(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	// Same spam to three trap addresses (redaction makes them alike),
	// and one other message from the same source.
	var ids []store.ID
	for _, rc := range []string{"a@trap.reporter.test", "b@trap.reporter.test", "c@trap.reporter.test"} {
		ids = append(ids, e.trapHit(t, "trap", rc, originIP, "same spam"))
	}
	other := e.trapHit(t, "trap", "a@trap.reporter.test", originIP, "different spam")
	// Workers run in parallel: any one of the three may be the primary.
	var primary store.ID
	e.run(t, func() bool {
		sent, dups := 0, 0
		for _, id := range ids {
			switch e.status(t, id) {
			case store.OutboxSent:
				sent++
				primary = id
			case store.OutboxDuplicate:
				dups++
			}
		}
		return sent == 1 && dups == 2 && e.status(t, other) == store.OutboxSent
	})
	for _, id := range ids {
		if x := e.entry(t, id); id != primary && x.DuplicateOf != primary {
			t.Fatalf("duplicate %+v not counted in %s", x, primary)
		}
	}
	if x := e.entry(t, primary); x.Count != 3 {
		t.Fatalf("count %d, want 3", x.Count)
	}
	if x := e.entry(t, other); x.Count != 1 {
		t.Fatalf("other message: count %d, want 1", x.Count)
	}
	if n := len(d.messages()); n != 2 {
		t.Fatalf("desk got %d, want 2", n)
	}
}

func TestResumeAfterCrash(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	a := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "a")
	b := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "b")
	// Simulate a crash: a claimed before transmission, b after.
	now := time.Now().UTC()
	for id, transmitted := range map[store.ID]bool{a: false, b: true} {
		if _, err := e.st.Claim(id, now, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.SetContact(id, now, []string{"abuse@origin.test"}, contact.SourceStatic, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.st.BeginDelivery(id, now, time.Hour, 10, nil); err != nil {
			t.Fatal(err)
		}
		if transmitted {
			if err := e.st.MarkTransmitted(id, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.run(t, func() bool { return e.status(t, a) == store.OutboxSent && e.status(t, b) == store.OutboxSent })
	if x := e.entry(t, b); x.Resent != 1 {
		t.Fatalf("b resent %d", x.Resent)
	}
	if x := e.entry(t, a); x.Resent != 0 {
		t.Fatalf("a resent %d", x.Resent)
	}
	if n := len(d.messages()); n != 2 {
		t.Fatalf("desk got %d, want 2", n)
	}
}

func TestSourcePolicy(t *testing.T) {
	for ip, ok := range map[string]bool{originIP: true, "10.0.0.1": false, "127.0.0.1": false, "100.64.0.1": false,
		"192.0.2.1": false, "240.0.0.1": false, "fe80::1": false, "2001:db8::1": false, "::ffff:10.0.0.1": false} {
		if got := sourcePolicy(netip.MustParseAddr(ip), nil) == ""; got != ok {
			t.Errorf("%s: reportable %v, want %v", ip, got, ok)
		}
	}
	if sourcePolicy(netip.Addr{}, nil) == "" {
		t.Error("no address is reportable")
	}
}

// Reload takes effect from the next entry on: a dry-run reporter given a
// configuration with reporter.enabled sends.
func TestReloadAppliesToNextEntry(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, false, ""), Options{})
	first := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "one")
	e.run(t, func() bool { return e.status(t, first) == store.OutboxDryRun })
	enabled := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	if err := e.rep.Reload(enabled.cfg); err != nil {
		t.Fatal(err)
	}
	second := e.trapHit(t, "trap", "v@trap.reporter.test", originIP, "two")
	e.run(t, func() bool { return e.status(t, second) == store.OutboxSent })
	if n := len(d.messages()); n != 1 {
		t.Fatalf("desk got %d, want 1", n)
	}
}
