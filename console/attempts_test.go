package console

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// The report page shows the entry's attempts as a table: time (as the
// other times, for the viewer's zone), node, host and address, outcome and
// the desk's reply, escaped.
func TestReportShowsAttempts(t *testing.T) {
	e := newEnv(t, false)
	id := e.trapHit("45.142.120.11", "x", "\r\nbody\r\n")
	c := e.client()
	if r := c.page("/reports/"+id.String(), http.StatusOK); !strings.Contains(r.body, `data-testid="no-attempts"`) || strings.Contains(r.body, `data-testid="attempt-row"`) {
		t.Fatalf("entry without attempts:\n%s", r.body)
	}
	now := time.Now().UTC()
	if _, err := e.st.Claim(id, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.BeginDelivery(id, now, time.Minute, 0, nil); err != nil {
		t.Fatal(err)
	}
	hostile := `no <script>alert(1)</script> "quoted" & more`
	if _, err := e.st.RecordTransaction(id, now, store.Transaction{Attempt: &store.Attempt{Outcome: store.AttemptPermFail,
		MX: "mx<b>.desk.example", IP: netip.MustParseAddr("127.0.0.1"), Code: 550, EnhancedCode: "5.7.1", Reply: hostile}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Retry(id, now, now, "550", "x", nil); err != nil {
		t.Fatal(err)
	}
	r := c.page("/reports/"+id.String(), http.StatusOK)
	if n := strings.Count(r.body, `data-testid="attempt-row"`); n != 1 {
		t.Fatalf("%d attempt rows:\n%s", n, r.body)
	}
	for _, want := range []string{
		`<code>550 5.7.1</code> no &lt;script&gt;alert(1)&lt;/script&gt; &#34;quoted&#34; &amp; more`,
		`mx&lt;b&gt;.desk.example [127.0.0.1]`,
		`<span class="status status-perm-failure" data-testid="attempt-outcome">perm-failure</span>`,
		`<time datetime="` + now.Format(time.RFC3339),
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("report page lacks %s", want)
		}
	}
	if strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, "<b>.desk") {
		t.Errorf("hostile reply unescaped:\n%s", r.body)
	}
}
