package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
	"github.com/xarfd/xarfd/xarf"
)

// reprocessConfig is a configuration whose trap channel trusts relays,
// redacting recipients with HMAC pseudonyms (a pseudonym of a pseudonym
// would show), and an fbl channel that reports.
func reprocessConfig(t *testing.T, dir, relays string) *config.Config {
	t.Helper()
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
hostname: mx.test.example
sender: {org: T, contact: abuse@test.example, domain: test.example}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@test.example"], uses: [report, store]}
  - name: trap
    kind: trap
    addresses: ["*@trap.test.example"]
    redact: {recipients: true, mode: hmac, hmac_key_file: `+key+`}
    uses: [report, store]
    trusted_relays: [`+relays+`]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// forwarded is trap mail forwarded by a partner relay (198.51.100.23)
// from the spammer's host (203.0.113.77), addressed to the trap.
var forwarded = []byte("Received: from relay.partner.example (relay.partner.example [198.51.100.23])\r\n" +
	"\tby mx.test.example; Mon, 2 Mar 2026 10:00:05 +0000\r\n" +
	"Received: from bad.example (bad.example [203.0.113.77])\r\n" +
	"\tby relay.partner.example for <victim@trap.test.example>; Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
	"From: Spammer <spam@bad.example>\r\nTo: victim@trap.test.example\r\nSubject: Cheap pills\r\n" +
	"Message-ID: <r1@bad.example>\r\nDate: Mon, 2 Mar 2026 09:59:59 +0000\r\n\r\nbuy, victim@trap.test.example\r\n")

// A trap channel that trusted the spammer's network by mistake
// quarantines its mail (every hop trusted); once the operator fixes
// trusted_relays, reprocessing makes the report under the same id, from
// the stored redacted bytes, without redacting them again.
func TestReprocessAfterTrustedRelaysChange(t *testing.T) {
	dir := t.TempDir()
	st := storetest.Open(t, dir)
	before := reprocessConfig(t, dir, `"198.51.100.0/24", "203.0.113.0/24"`)
	in, err := New(before, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := env()
	e.Via, e.PeerIP = "http", e.PeerIP.Prev().Next() // forwarded: origin from the Received chain
	res, err := in.Accept(e, []Delivery{{Channel: before.Channel("trap"), Rcpts: []string{"victim@trap.test.example"}}}, forwarded)
	if err != nil {
		t.Fatal(err)
	}
	id := res[0].ID
	if !res[0].Quarantined || !strings.Contains(res[0].Reason, "trusted relay") {
		t.Fatalf("want quarantined for an all-trusted chain: %+v", res[0])
	}
	rawBefore, _ := st.Raw(id)
	msgBefore, _ := st.Message(id)

	// Unchanged configuration: still quarantined, same reason, nothing else.
	again, err := in.Reprocess(id)
	if err != nil || !again.Quarantined || again.Report || again.ID != id || !strings.Contains(again.Reason, "trusted relay") {
		t.Fatalf("reprocess with the same configuration: %+v, %v", again, err)
	}
	if q, _ := st.QuarantineEntries(); len(q) != 1 {
		t.Fatalf("quarantine = %+v", q)
	}

	// The fix, as a reload does it: a new ingester over the same store.
	after := reprocessConfig(t, dir, `"198.51.100.0/24"`)
	var published []*store.Report
	in2, err := New(after, st, Options{OnReport: func(r *store.Report) { published = append(published, r) }})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := in2.Reprocess(id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Report || got.Quarantined || got.ID != id {
		t.Fatalf("result = %+v", got)
	}
	rep, err := st.GetReport(id)
	if err != nil {
		t.Fatal(err)
	}
	var doc xarf.Report
	if err := json.Unmarshal(rep.XARF, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SourceIdentifier != "203.0.113.77" || doc.ReportID != id.String() || rep.SourceIP.String() != "203.0.113.77" {
		t.Errorf("report: source %q id %q", doc.SourceIdentifier, doc.ReportID)
	}
	if v := validator(t); v.Validate(rep.XARF) != nil {
		t.Errorf("report does not validate: %v", v.Validate(rep.XARF))
	}
	if bytes.Contains(bytes.ToLower(rep.XARF), []byte("victim")) || doc.SMTPTo != "" {
		t.Error("the report carries the trap address")
	}
	rawAfter, _ := st.Raw(id)
	if !bytes.Equal(rawAfter, rawBefore) {
		t.Error("the stored (redacted) bytes changed")
	}
	m, _ := st.Message(id)
	if m.Status != store.StatusConverted || m.Reason != "" || !slices.Equal(m.Envelope.Rcpts, msgBefore.Envelope.Rcpts) ||
		!strings.HasSuffix(m.Envelope.Rcpts[0], "@redacted.invalid") {
		t.Errorf("record %+v, before %+v", m, msgBefore)
	}
	if q, _ := st.QuarantineEntries(); len(q) != 0 {
		t.Errorf("still in the quarantine: %+v", q)
	}
	box, err := st.GetOutbox(id)
	if err != nil || box.Status != store.OutboxPending || box.Created.Before(start.Add(-time.Second)) {
		t.Errorf("outbox entry %+v, %v", box, err)
	}
	if len(published) != 1 || published[0].ID != id {
		t.Errorf("OnReport saw %d reports", len(published))
	}
	hs, _ := st.HourlyStats(time.Now().Add(-2*time.Hour), time.Now().Add(time.Hour))
	var sum store.HourStat
	for _, h := range hs {
		sum.Messages, sum.Reports, sum.Quarantined = sum.Messages+h.Messages, sum.Reports+h.Reports, sum.Quarantined+h.Quarantined
	}
	if sum.Messages != 1 || sum.Reports != 1 || sum.Quarantined != 1 {
		t.Errorf("counters %+v: want one message, quarantined at arrival, and one report", sum)
	}

	// Done once: it is a report now.
	if _, err := in2.Reprocess(id); !errors.Is(err, store.ErrNotQuarantined) {
		t.Errorf("second reprocess: %v", err)
	}
}

// A message quarantined by an older parser (simulated by storing a real
// feedback report with the quarantine reason that version gave) becomes
// a report of its channel when reprocessed.
func TestReprocessRealFeedbackReport(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(sharedDir(t), "testdata", "arf", "aol-abuseio-1.eml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st := storetest.Open(t, dir)
	cfg := reprocessConfig(t, dir, `"198.51.100.0/24"`)
	in, err := New(cfg, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := store.NewID()
	m := &store.Message{ID: id, Channel: "fbl", Size: len(raw), Status: store.StatusQuarantined,
		Reason: "xarf: no origin address: no Source-IP (parser of xarfd 0.1)", Envelope: env()}
	m.Envelope.Rcpts = []string{"fbl@test.example"}
	if err := st.Put([]store.Entry{{Message: m, Raw: raw}}); err != nil {
		t.Fatal(err)
	}
	res, err := in.Reprocess(id)
	if err != nil || !res.Report {
		t.Fatalf("reprocess: %+v, %v", res, err)
	}
	rep, err := st.GetReport(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := validator(t).Validate(rep.XARF); err != nil {
		t.Errorf("report does not validate: %v", err)
	}
	if _, err := st.GetOutbox(id); err != nil {
		t.Errorf("no outbox entry for a reporting channel: %v", err)
	}
	if got, _ := st.Raw(id); !bytes.Equal(got, raw) {
		t.Error("stored bytes changed")
	}
}

func TestReprocessRefuses(t *testing.T) {
	cfg, st, in := setup(t, "")
	if _, err := in.Reprocess(store.ID{1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	// A converted message is not quarantined.
	e := env()
	raw := []byte("From: s@origin.example\r\nTo: t@trap.test.example\r\nSubject: x\r\n\r\nx\r\n")
	res, err := in.Accept(e, []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"t@trap.test.example"}}}, raw)
	if err != nil || !res[0].Report {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := in.Reprocess(res[0].ID); !errors.Is(err, store.ErrNotQuarantined) {
		t.Errorf("a report: %v", err)
	}
	// A withheld body: nothing to run again.
	bad := []byte("To: x@trap.test.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x@trap.test.example\"\r\n\r\n--x@trap.test.example\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x@trap.test.example--\r\n")
	res, err = in.Accept(e, []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"x@trap.test.example"}}}, bad)
	if err != nil || !res[0].Quarantined {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := in.Reprocess(res[0].ID); !errors.Is(err, ErrWithheld) {
		t.Errorf("withheld: %v", err)
	}
	// Stored unredacted by a channel that did not redact then, and
	// redacts now: refused, the evidence left as it is.
	id, _ := store.NewID()
	plain := []byte("From: s@origin.example\r\nTo: y@trap.test.example\r\n\r\nx\r\n")
	m := &store.Message{ID: id, Channel: "trap", Size: len(plain), Status: store.StatusQuarantined, Reason: "old", Envelope: e}
	if err := st.Put([]store.Entry{{Message: m, Raw: plain}}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Reprocess(id); !errors.Is(err, ErrUnredacted) {
		t.Errorf("unredacted bytes in a redacting channel: %v", err)
	}
	// A channel no longer configured.
	id2, _ := store.NewID()
	m2 := &store.Message{ID: id2, Channel: "gone", Size: 1, Status: store.StatusQuarantined, Reason: "old", Envelope: e}
	if err := st.Put([]store.Entry{{Message: m2, Raw: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Reprocess(id2); !errors.Is(err, ErrNoChannel) {
		t.Errorf("removed channel: %v", err)
	}
	if q, _ := st.QuarantineEntries(); len(q) != 3 {
		t.Errorf("refusals changed the quarantine: %+v", q)
	}
}
