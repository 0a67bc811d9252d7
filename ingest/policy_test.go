package ingest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/xarf"
)

// TestListedDomainNeverBecomesSMTPTo: a trap channel that redacts its
// listed domain but not recipients as such must not put a listed address
// back into the report as smtp_to (it did: the envelope recipient was
// copied as it was), and its description says what was redacted.
func TestListedDomainNeverBecomesSMTPTo(t *testing.T) {
	cfg, st, in := setup(t, `
  - {name: listed, kind: trap, addresses: ["*@listed.test.example", "*@open.test.example"], redact: {domains: [listed.test.example]}}
`)
	peer := env()
	peer.PeerIP = peer.PeerIP.Next() // any address: the channel trusts no relay
	for rcpt, wantTo := range map[string]string{
		"hidden@listed.test.example": "",
		"shown@open.test.example":    "shown@open.test.example",
	} {
		raw := []byte("To: " + rcpt + "\r\nSubject: s\r\nMessage-ID: <1@spam.example>\r\n\r\nhi\r\n")
		res, err := in.Accept(peer, []Delivery{{Channel: cfg.Channel("listed"), Rcpts: []string{rcpt}}}, raw)
		if err != nil || !res[0].Report {
			t.Fatalf("%s: %v %+v", rcpt, err, res)
		}
		r, err := st.GetReport(res[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		var doc xarf.Report
		if err := json.Unmarshal(r.XARF, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.SMTPTo != wantTo || !strings.Contains(strings.Join(doc.Tags, " "), "redacted:listed") || !strings.Contains(doc.Description, "other recipient addresses appear as received") {
			t.Errorf("%s: smtp_to %q (want %q), tags %v, description %q", rcpt, doc.SMTPTo, wantTo, doc.Tags, doc.Description)
		}
		if strings.Contains(string(r.XARF), "hidden@") {
			t.Errorf("%s: listed address in the report", rcpt)
		}
	}
}
