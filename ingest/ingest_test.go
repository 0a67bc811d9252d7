package ingest

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/internal/leakcheck"
	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/store/storetest"
	"github.com/xarfd/xarfd/xarf"
)

func setup(t *testing.T, extra string) (*config.Config, *store.Store, *Ingester) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	cfg, err := config.Parse([]byte(`
hostname: mx.test.example
sender: {org: T, contact: abuse@test.example, domain: test.example}
channels:
  - {name: fbl, kind: arf, addresses: ["fbl@test.example"]}
  - {name: trap, kind: trap, addresses: ["*@trap.test.example"], redact: {recipients: true}}
  - {name: hmac, kind: trap, addresses: ["*@h.test.example"], redact: {recipients: true, mode: hmac, hmac_key_file: `+key+`}}
`+extra), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st := storetest.Open(t, dir)
	in, err := New(cfg, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, st, in
}

func env() store.Envelope {
	return store.Envelope{PeerIP: netip.MustParseAddr("192.0.2.1"), PeerPort: 25, MailFrom: "s@origin.example", Via: "smtp"}
}

func TestRedactingChannelNeverStoresTheAddress(t *testing.T) {
	cfg, st, in := setup(t, "")
	raw := []byte("To: Trap.One@trap.test.example\r\nList-Unsubscribe: <https://x.example/u?e=trap.one%40trap.test.example>\r\nSubject: s\r\n\r\nHi trap.one@trap.test.example\r\n")
	res, err := in.Accept(env(), []Delivery{
		{Channel: cfg.Channel("trap"), Rcpts: []string{"trap.one@trap.test.example"}},
		{Channel: cfg.Channel("fbl"), Rcpts: []string{"fbl@test.example"}},
	}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Redaction.Total() < 3 || res[1].Redaction.Total() != 0 {
		t.Fatalf("results = %+v", res)
	}
	trapRaw, _ := st.Raw(res[0].ID)
	if bytes.Contains(bytes.ToLower(trapRaw), []byte("trap.one")) {
		t.Errorf("address stored: %q", trapRaw)
	}
	m, _ := st.Message(res[0].ID)
	if m.Envelope.Rcpts[0] != "redacted@redacted.invalid" || m.Size != len(trapRaw) {
		t.Errorf("record = %+v", m)
	}
	// The other channel gets the message untouched.
	fblRaw, _ := st.Raw(res[1].ID)
	if !bytes.Equal(fblRaw, raw) {
		t.Errorf("fbl raw = %q", fblRaw)
	}
	// raw itself is not modified.
	if !bytes.Contains(raw, []byte("Trap.One@")) {
		t.Error("Accept modified its input")
	}
}

func TestHMACPseudonymsAreStable(t *testing.T) {
	cfg, st, in := setup(t, "")
	var seen []string
	for _, rcpt := range []string{"a@h.test.example", "A@H.test.example", "b@h.test.example"} {
		res, err := in.Accept(env(), []Delivery{{Channel: cfg.Channel("hmac"), Rcpts: []string{rcpt}}}, []byte("Subject: x\r\n\r\nto "+rcpt+"\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := st.Message(res[0].ID)
		p := m.Envelope.Rcpts[0]
		if !strings.HasPrefix(p, "r-") || !strings.HasSuffix(p, "@redacted.invalid") {
			t.Fatalf("pseudonym %q", p)
		}
		raw, _ := st.Raw(res[0].ID)
		if !bytes.Contains(raw, []byte(p)) {
			t.Errorf("body does not carry the same pseudonym %q: %q", p, raw)
		}
		seen = append(seen, p)
	}
	if seen[0] != seen[1] || seen[0] == seen[2] {
		t.Errorf("pseudonyms %v: same address must map alike, different ones apart", seen)
	}
}

func TestUnredactableIsQuarantinedWithoutBody(t *testing.T) {
	cfg, st, in := setup(t, "")
	// The address is part of a MIME boundary, which cannot be rewritten
	// without breaking the message.
	raw := []byte("To: x@trap.test.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x@trap.test.example\"\r\n\r\n--x@trap.test.example\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x@trap.test.example--\r\n")
	res, err := in.Accept(env(), []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"x@trap.test.example"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Quarantined || strings.Contains(res[0].Reason, "x@trap") {
		t.Fatalf("result = %+v", res[0])
	}
	m, _ := st.Message(res[0].ID)
	if m.Status != store.StatusQuarantined || !m.Withheld || m.Envelope.Rcpts[0] != "redacted@redacted.invalid" {
		t.Errorf("record = %+v", m)
	}
	if _, err := st.Raw(res[0].ID); err != store.ErrNotFound {
		t.Errorf("body stored: %v", err)
	}
	if q, _ := st.QuarantineEntries(); len(q) != 1 || q[0].Key != m.ID.String() {
		t.Errorf("quarantine = %+v", q)
	}
	if n, _ := st.Recover(); n != 0 {
		t.Errorf("a withheld body is not an unreadable record, Recover moved %d", n)
	}
}

func TestNoDelivery(t *testing.T) {
	_, _, in := setup(t, "")
	if _, err := in.Accept(env(), nil, []byte("x")); err != ErrNoDelivery {
		t.Errorf("got %v", err)
	}
}

// sharedDir is the shared corpus and schemas (XARFD_SHARED, default
// ../../shared from this package); tests that need it skip when absent.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("XARFD_SHARED")
	if dir == "" {
		dir = "../../shared"
	}
	if _, err := os.Stat(filepath.Join(dir, "xarf", "xarf-spec", "schemas", "v4")); err != nil {
		t.Skipf("shared corpus not found at %s; set XARFD_SHARED", dir)
	}
	return dir
}

func validator(t *testing.T) *xarf.Validator {
	t.Helper()
	v, err := xarf.NewValidator(filepath.Join(sharedDir(t), "xarf", "xarf-spec", "schemas", "v4"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTrapDirectDeliveryBecomesReport(t *testing.T) {
	cfg, st, in := setup(t, "")
	v := validator(t)
	var published []*store.Report
	in.opt.OnReport = func(r *store.Report) { published = append(published, r) }
	e := env()
	e.PeerIP, e.PeerPort = netip.MustParseAddr("203.0.113.9"), 40123
	raw := []byte("From: Spammer <spam@origin.example>\r\nTo: trap@trap.test.example\r\nSubject: Cheap pills\r\nMessage-ID: <1@origin.example>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbuy\r\n")
	res, err := in.Accept(e, []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"trap@trap.test.example"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Report || res[0].Quarantined {
		t.Fatalf("result = %+v", res[0])
	}
	rep, err := st.GetReport(res[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(rep.XARF); err != nil {
		t.Errorf("stored report does not validate: %v\n%s", err, rep.XARF)
	}
	var doc xarf.Report
	if err := json.Unmarshal(rep.XARF, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SourceIdentifier != "203.0.113.9" || doc.SourcePort != 40123 || doc.SMTPFrom != "s@origin.example" ||
		doc.EvidenceSource != xarf.SourceSpamtrap || doc.SMTPTo != "" || doc.ReportID != res[0].ID.String() ||
		rep.SourceIP.String() != "203.0.113.9" {
		t.Errorf("report = %+v", doc)
	}
	if bytes.Contains(bytes.ToLower(rep.XARF), []byte("trap@trap")) {
		t.Error("report carries the trap address")
	}
	m, _ := st.Message(res[0].ID)
	if m.Status != store.StatusConverted {
		t.Errorf("message status %q", m.Status)
	}
	if box, _, _ := st.Outbox(store.OutboxPending, store.ID{}, 10); len(box) != 1 || box[0].ID != res[0].ID {
		t.Errorf("outbox = %+v", box)
	}
	if len(published) != 1 || published[0].ID != res[0].ID {
		t.Errorf("OnReport saw %d reports", len(published))
	}
}

func TestCorpusThroughIngest(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "testdata", "arf")
	cfg, st, in := setup(t, "  - {name: fblr, kind: arf, addresses: [\"fblr@test.example\"], redact: {recipients: true}}\n")
	v := validator(t)
	var truth struct {
		Samples map[string]struct{ Category string }
	}
	tb, err := os.ReadFile(filepath.Join(dir, "truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(tb, &truth); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) < 40 {
		t.Fatalf("only %d corpus files", len(files))
	}
	reports, quarantined := 0, 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range []string{"fbl", "fblr"} {
			res, err := in.Accept(env(), []Delivery{{Channel: cfg.Channel(ch), Rcpts: []string{ch + "@test.example"}}}, raw)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			neg := truth.Samples[filepath.Base(f)].Category == "negative"
			if neg && res[0].Report {
				t.Errorf("%s: a non-report yielded a report", filepath.Base(f))
			}
			if res[0].Quarantined {
				quarantined++
				m, _ := st.Message(res[0].ID)
				if m.Reason == "" {
					t.Errorf("%s: quarantined without reason", filepath.Base(f))
				}
				if !neg {
					t.Logf("%s (%s): quarantined: %s", filepath.Base(f), ch, m.Reason)
				}
				continue
			}
			reports++
			rep, err := st.GetReport(res[0].ID)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if err := v.Validate(rep.XARF); err != nil {
				t.Errorf("%s (%s): invalid XARF: %v", filepath.Base(f), ch, err)
			}
		}
	}
	t.Logf("%d reports, %d quarantined", reports, quarantined)
	if reports < 60 {
		t.Errorf("only %d reports from %d files x 2 channels", reports, len(files))
	}
}

// TestForgedTrapSenderIsRedacted: spam "from" the trap address itself
// must not reveal it through the envelope or the report's smtp_from.
func TestForgedTrapSenderIsRedacted(t *testing.T) {
	cfg, st, in := setup(t, "")
	e := env()
	e.PeerIP, e.MailFrom = netip.MustParseAddr("203.0.113.9"), "Trap@trap.test.example"
	raw := []byte("Return-Path: <trap@trap.test.example>\r\nFrom: trap@trap.test.example\r\nTo: trap@trap.test.example\r\nSubject: x\r\n\r\nx\r\n")
	res, err := in.Accept(e, []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"trap@trap.test.example"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := st.Message(res[0].ID)
	rep, err := st.GetReport(res[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := st.Raw(res[0].ID)
	for _, b := range [][]byte{[]byte(m.Envelope.MailFrom), rep.XARF, body} {
		leakcheck.Check(t, b, []string{"trap@trap.test.example"})
	}
}

// TestForgedSenderAtTrapDomainIsRedacted: spam "from" another local part
// at the trap's domain (spammers forge the target domain as the sender)
// must not name the trap domain in the envelope or the report's
// smtp_from either: the domain alone tells the sending network which
// domain is a trap.
func TestForgedSenderAtTrapDomainIsRedacted(t *testing.T) {
	cfg, st, in := setup(t, "")
	e := env()
	e.PeerIP, e.MailFrom = netip.MustParseAddr("203.0.113.9"), "Sales@Trap.Test.Example"
	raw := []byte("From: offers@elsewhere.example\r\nTo: someone@trap.test.example\r\nSubject: x\r\n\r\nx\r\n")
	res, err := in.Accept(e, []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"someone@trap.test.example"}}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := st.Message(res[0].ID)
	rep, err := st.GetReport(res[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{[]byte(m.Envelope.MailFrom), rep.XARF} {
		if bytes.Contains(bytes.ToLower(b), []byte("trap.test.example")) {
			t.Errorf("the trap domain leaked: %.300s", b)
		}
	}
}
