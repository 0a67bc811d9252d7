package ingest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

func feedbackFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "arf", "testdata", "feedback", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func acceptFBL(t *testing.T, in *Ingester, ch string, raw []byte) Result {
	t.Helper()
	cfg := in.cfg
	res, err := in.Accept(env(), []Delivery{{Channel: cfg.Channel(ch), Rcpts: []string{"fbl@test.example"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// TestAuthFailureIsNotReportedAsSpam: a DMARC failure report (RFC 6591)
// is stored and quarantined with a reason that says what it is; no
// report, no outbox entry. It used to become a messaging/spam report
// queued for the origin network.
func TestAuthFailureIsNotReportedAsSpam(t *testing.T) {
	_, st, in := setup(t, "")
	for _, raw := range [][]byte{
		[]byte(strings.ReplaceAll(string(feedbackFixture(t, "abuse.eml")), "Feedback-Type: abuse", "Feedback-Type: auth-failure\nAuth-Failure: dmarc")),
		feedbackFixture(t, "dmarc-forensic.eml"), // no feedback part: the Subject says it
	} {
		r := acceptFBL(t, in, "fbl", raw)
		if !r.Quarantined || r.Report || !strings.Contains(r.Reason, "authentication failure report") {
			t.Errorf("result = %+v", r)
		}
		if _, err := st.GetOutbox(r.ID); err != store.ErrNotFound {
			t.Errorf("outbox entry for an auth-failure report: %v", err)
		}
		if _, err := st.GetReport(r.ID); err != store.ErrNotFound {
			t.Errorf("report stored for an auth-failure report: %v", err)
		}
		if raw, err := st.Raw(r.ID); err != nil || len(raw) == 0 {
			t.Errorf("the message itself must be kept: %v", err)
		}
	}
}

// TestNotSpamWithdrawsTheComplaint: a not-spam report about the message
// a pending complaint reported withdraws that complaint's report, and is
// recorded (quarantined) with what it did; one about an unknown message
// withdraws nothing and says so.
func TestNotSpamWithdrawsTheComplaint(t *testing.T) {
	_, st, in := setup(t, "")
	c := acceptFBL(t, in, "fbl", feedbackFixture(t, "abuse.eml"))
	if !c.Report {
		t.Fatalf("complaint: %+v", c)
	}
	if e, err := st.GetOutbox(c.ID); err != nil || e.Status != store.OutboxPending {
		t.Fatalf("complaint's entry: %+v %v", e, err)
	}
	r := acceptFBL(t, in, "fbl", feedbackFixture(t, "not-spam.eml"))
	if !r.Quarantined || r.Report || !strings.Contains(r.Reason, c.ID.String()) || !strings.Contains(r.Reason, "withdrawn") {
		t.Fatalf("retraction: %+v", r)
	}
	e, err := st.GetOutbox(c.ID)
	if err != nil || e.Status != store.OutboxWithdrawn || !strings.Contains(e.Reason, r.ID.String()) {
		t.Errorf("complaint's entry after the retraction: %+v %v", e, err)
	}
	if m, _ := st.Message(r.ID); m == nil || m.Reason != r.Reason {
		t.Errorf("stored retraction record: %+v", m)
	}
	// Another Message-ID: nothing to withdraw, and the reason says so.
	other := strings.ReplaceAll(string(feedbackFixture(t, "not-spam.eml")), "offer-2025-0001", "offer-2025-0099")
	r = acceptFBL(t, in, "fbl", []byte(other))
	if !r.Quarantined || !strings.Contains(r.Reason, "nothing withdrawn") {
		t.Errorf("unmatched retraction: %+v", r)
	}
}

// TestUnknownFeedbackTypeQuarantined: a type xarfd does not know is kept
// for review with its name in the reason, not reported as spam.
func TestUnknownFeedbackTypeQuarantined(t *testing.T) {
	_, st, in := setup(t, "")
	r := acceptFBL(t, in, "fbl", feedbackFixture(t, "unknown-type.eml"))
	if !r.Quarantined || r.Report || !strings.Contains(r.Reason, `unknown feedback-type "complaint-about-tone"`) {
		t.Errorf("result = %+v", r)
	}
	if _, err := st.GetOutbox(r.ID); err != store.ErrNotFound {
		t.Errorf("outbox entry: %v", err)
	}
}

// TestStaleComplaintStoredNotReported: a complaint whose Arrival-Date is
// older than reporter.max_age when it arrives is stored as a report but
// its outbox entry is withheld with that reason (it used to be queued
// like a fresh one); a fresh one is queued.
func TestStaleComplaintStoredNotReported(t *testing.T) {
	_, st, in := setup(t, "reporter: {max_age: 72h}\n")
	base := string(feedbackFixture(t, "abuse.eml"))
	arrival := func(ago time.Duration) []byte {
		d := time.Now().Add(-ago).UTC().Format(time.RFC1123Z)
		return []byte(strings.Replace(base, "Version: 1\n", "Version: 1\nArrival-Date: "+d+"\n", 1))
	}
	old := acceptFBL(t, in, "fbl", arrival(80*time.Hour))
	if !old.Report {
		t.Fatalf("stale complaint not stored as a report: %+v", old)
	}
	e, err := st.GetOutbox(old.ID)
	if err != nil || e.Status != store.OutboxWithheld || !strings.Contains(e.Reason, "reporter.max_age") {
		t.Errorf("stale complaint's entry: %+v %v", e, err)
	}
	due, _, _ := st.DueOutbox(time.Now().Add(time.Hour), 10)
	for _, d := range due {
		if d.ID == old.ID {
			t.Error("stale complaint is due for reporting")
		}
	}
	fresh := acceptFBL(t, in, "fbl", arrival(60*time.Hour))
	if e, err := st.GetOutbox(fresh.ID); err != nil || e.Status != store.OutboxPending {
		t.Errorf("fresh complaint's entry: %+v %v", e, err)
	}
}
