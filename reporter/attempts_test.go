package reporter

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/xarfd/xarfd/internal/leakcheck"
	"github.com/xarfd/xarfd/store"
)

func history(t *testing.T, e *env, id store.ID) []store.Attempt {
	t.Helper()
	h, err := e.st.AttemptsOf(id)
	if err != nil {
		t.Fatal(err)
	}
	return h.Attempts
}

// A desk that answers 451 and then accepts leaves two rows: when, which
// host and address, what it said.
func TestAttemptsRecordEachTransaction(t *testing.T) {
	d := startDesk(t, func(call int) error {
		if call == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	})
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "trap", "victim@trap.reporter.test", originIP, "buy now")
	e.run(t, func() bool { return e.status(t, id) == store.OutboxSent })
	rows := history(t, e, id)
	if len(rows) != 2 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	first, second := rows[0], rows[1]
	if first.Outcome != store.AttemptTempFail || first.Code != 451 || first.EnhancedCode != "4.3.0" || first.Reply != "try later" ||
		first.MX != "127.0.0.1" || first.IP != lo || first.Node == "" || first.At.IsZero() {
		t.Errorf("first row %+v", first)
	}
	if second.Outcome != store.AttemptSent || second.Code != 250 || second.IP != lo || !second.At.After(first.At) && !second.At.Equal(first.At) {
		t.Errorf("second row %+v", second)
	}
}

// Decisions without a transaction are rows too: withheld by policy,
// rendered in a dry run.
func TestAttemptsRecordDecisions(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, false, ""), Options{})
	private := e.trapHit(t, "trap", "a@trap.reporter.test", "10.1.2.3", "p")
	dry := e.trapHit(t, "trap", "a@trap.reporter.test", originIP, "d")
	e.run(t, func() bool {
		return e.status(t, private) == store.OutboxWithheld && e.status(t, dry) == store.OutboxDryRun
	})
	if rows := history(t, e, private); len(rows) != 1 || rows[0].Outcome != store.AttemptWithheld || !strings.Contains(rows[0].Detail, "private") {
		t.Errorf("withheld: %+v", rows)
	}
	if rows := history(t, e, dry); len(rows) != 1 || rows[0].Outcome != store.AttemptDryRun || rows[0].MX != "" {
		t.Errorf("dry run: %+v", rows)
	}
}

// A desk's reply may echo anything of what it got; what it got never
// holds a redacting channel's recipient, so neither does a row. The desk
// here is as hostile as it gets: it looks for the recipient in every
// encoding leakcheck knows and refuses the report quoting what it found.
func TestAttemptRowsNeverHoldRedactedRecipient(t *testing.T) {
	const victim = "victim@trap.reporter.test"
	d := startDesk(t, nil)
	d.mu.Lock()
	d.inspect = func(data []byte) error {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "saw: " + strings.Join(leakcheck.Find(data, []string{victim}), "; ") + " in " + string(data[:min(len(data), 300)])}
	}
	d.mu.Unlock()
	e := setup(t, trapChannel+smarthostYAML(d.addr, true, ""), Options{})
	id := e.trapHit(t, "trap", victim, originIP, "mail "+victim+" to win")
	e.run(t, func() bool { return e.status(t, id) == store.OutboxFailed })
	rows := history(t, e, id)
	if len(rows) != 1 || rows[0].Outcome != store.AttemptPermFail || !strings.HasPrefix(rows[0].Reply, "saw:") {
		t.Fatalf("rows %+v", rows)
	}
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	leakcheck.Check(t, b, []string{victim})
}
