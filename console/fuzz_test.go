package console

import (
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// The evidence view parses hostile messages: the MIME walk must never
// panic and stays bounded, and the highlighting keeps every byte.
func FuzzEvidence(f *testing.F) {
	if b, err := os.ReadFile("testdata/hostile.eml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+\r\n--x--\r\n"))
	f.Add([]byte("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nredacted=40redacted.invalid =E9\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		parts := walkParts(raw)
		if len(parts) > maxParts {
			t.Fatalf("%d parts, more than %d", len(parts), maxParts)
		}
		for i := range parts {
			p := &parts[i]
			if p.N != i+1 {
				t.Fatalf("part %d numbered %d", i+1, p.N)
			}
			_ = p.utf8Text()
		}
		head, body := splitHeader(raw)
		if len(head)+len(body) != len(raw) {
			t.Fatalf("splitHeader lost bytes")
		}
		var b strings.Builder
		for _, s := range highlight(string(raw)) {
			b.WriteString(s.Text)
		}
		if want := strings.ToValidUTF8(string(raw), "\uFFFD"); b.String() != want {
			t.Fatalf("highlight changed the text")
		}
	})
}

// The reports filter reads a query from anyone who can load the page.
func FuzzReportFilter(f *testing.F) {
	f.Add("channel=trap&source_ip=::ffff:1.2.3.4&evidence=spamtrap&method=smtp-peer&text=x&period=24h&from=2026-01-02T03:04&until=2026-01-03T00:00&cursor=01a2472f-c360-70a5-9c19-6949a72726b8")
	f.Add("text=%ff%fe&period=-1h&cursor=zz")
	f.Fuzz(func(t *testing.T, q string) {
		v, err := url.ParseQuery(q)
		if err != nil {
			return
		}
		fl := parseReportFilter(v, time.Unix(1e9, 0))
		if len(fl.Errors) == 0 && len(fl.q.Text) > maxText {
			t.Fatalf("text of %d bytes accepted", len(fl.q.Text))
		}
		_ = fl.liveQuery()
	})
}
