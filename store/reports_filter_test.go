package store

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// seedGolden stores the XARF documents xarf's golden files hold (real
// conversions of trap mail and provider feedback reports), one per
// minute, oldest first, each with its evidence as the stored message,
// as ingest stores them. It returns the ids by golden file name.
func seedGolden(t *testing.T, s *Store) map[string]ID {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "xarf", "testdata", "*.json"))
	if err != nil || len(files) < 10 {
		t.Fatalf("golden files: %v %v", files, err)
	}
	sort.Strings(files)
	out := map[string]ID{}
	start := time.Now().Add(-time.Hour)
	for i, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			EvidenceSource string `json:"evidence_source"`
			Source         string `json:"source_identifier"`
		}
		if err := json.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		// The golden files abbreviate the evidence payload; the message
		// goes back in: the .eml beside the golden file where there is
		// one, else a stand-in message.
		raw, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".eml")
		if err != nil {
			raw = []byte("Subject: evidence of " + filepath.Base(f) + "\r\n\r\nbody\r\n")
		}
		doc = payloadRE.ReplaceAll(doc, []byte(`"payload":"`+base64.StdEncoding.EncodeToString(raw)+`"`))
		channel := map[string]string{"spamtrap": "trap", "user_complaint": "fbl"}[d.EvidenceSource]
		id := idAt(t, start.Add(time.Duration(i)*time.Minute))
		m := msg(t, channel)
		m.ID, m.Status = id, StatusConverted
		e := Entry{Message: m, Raw: raw, Report: &Report{ID: id, Channel: channel, Via: "smtp", XARF: doc}}
		if a, err := netip.ParseAddr(d.Source); err == nil {
			e.Report.SourceIP = a
		}
		if err := s.Put([]Entry{e}); err != nil {
			t.Fatal(err)
		}
		if rec, err := decodeRecord(storedValue(t, s, id)); err != nil || !rec.cut {
			t.Fatalf("%s: the evidence was not cut out of the stored document", f)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = id
	}
	return out
}

var payloadRE = regexp.MustCompile(`"payload":\s*"[^"]*"`)

// names maps the reports back to their golden names, sorted.
func names(golden map[string]ID, rs []Report) []string {
	var out []string
	for _, r := range rs {
		for n, id := range golden {
			if id == r.ID {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestReportFilters(t *testing.T) {
	s := open(t, t.TempDir())
	g := seedGolden(t, s)
	for _, c := range []struct {
		name string
		q    Query
		want []string
	}{
		{"direct delivery", Query{Method: "smtp-peer"}, []string{"01-trap-direct-ipv4", "08-trap-null-sender"}},
		{"received chain, inferred too", Query{Method: "received-chain"}, []string{
			"02-trap-postfix-relay-ipv4", "03-trap-exim-relay-port", "04-trap-sendmail-relay-ipv6", "05-trap-exchange-relay",
			"06-trap-qmail-relay", "07-trap-gmail-forward-ipv6", "09-trap-no-envelope", "20-corpus-yahoo-received-chain"}},
		{"inferred only", Query{Method: "inferred-received-chain"}, []string{"09-trap-no-envelope", "20-corpus-yahoo-received-chain"}},
		{"inferred in another channel", Query{Method: "inferred-received-chain", Channel: "fbl"}, []string{"20-corpus-yahoo-received-chain"}},
		{"JMRP subject", Query{Method: "jmrp-subject"}, []string{"21-corpus-jmrp"}},
		{"source-ip and complaints", Query{Method: "source-ip", EvidenceSource: "user_complaint"}, []string{
			"22-corpus-ipv6-source-ip", "25-corpus-reported-bounce-null", "26-corpus-encoded-word-sender", "27-corpus-iso2022jp-subject"}},
		{"evidence source", Query{EvidenceSource: "spamtrap", Method: "source-ip"}, nil},
		{"no such method", Query{Method: "received"}, nil},
		{"subject, any case", Query{Text: "GÜNSTIGE medikamente"}, []string{"02-trap-postfix-relay-ipv4"}},
		{"subject in Japanese", Query{Text: "もらって嬉しい"}, []string{"27-corpus-iso2022jp-subject"}},
		{"source address", Query{Text: "2001:DB8:85A3"}, []string{"04-trap-sendmail-relay-ipv6"}},
		{"text and source index", Query{Text: "lottery", SourceIP: netip.MustParseAddr("198.51.100.150")}, []string{"06-trap-qmail-relay"}},
		{"text and wrong source", Query{Text: "lottery", SourceIP: netip.MustParseAddr("198.51.100.151")}, nil},
	} {
		got := names(g, pages(t, s, withLimit(c.q, 2)))
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}

	// What the bytes spell differently from the decoded text: a \u
	// escape, and letters that lower-case to ASCII (U+212A KELVIN SIGN).
	for i, subject := range []string{`\u0053\u0050AM-escaped`, "\u212aelvin-sign", "KELVIN-plain"} {
		doc := []byte(`{"xarf_version":"4.2.0","report_id":"x","subject":"` + subject + `","evidence_source":"spamtrap"}`)
		if err := s.Put([]Entry{{Report: &Report{ID: idAt(t, time.Now().Add(time.Duration(i)*time.Millisecond)), Channel: "odd", XARF: doc}}}); err != nil {
			t.Fatal(err)
		}
	}
	for q, n := range map[string]int{"spam-escaped": 1, "kelvin": 2, "elvin-sign": 1, "-plain": 1} {
		if got := pages(t, s, withLimit(Query{Channel: "odd", Text: q}, 10)); len(got) != n {
			t.Errorf("text %q: %d matches, want %d", q, len(got), n)
		}
	}

	// Never the evidence: a piece of a stored payload, as it reads in the
	// document, matches nothing.
	// A submitted document (no message) keeps its payload in place.
	raw, _ := os.ReadFile(filepath.Join("..", "xarf", "testdata", "01-trap-direct-ipv4.eml"))
	doc, _ := os.ReadFile(filepath.Join("..", "xarf", "testdata", "01-trap-direct-ipv4.json"))
	doc = payloadRE.ReplaceAll(doc, []byte(`"payload":"`+base64.StdEncoding.EncodeToString(raw)+`"`))
	if err := s.Put([]Entry{{Report: &Report{ID: idAt(t, time.Now()), Channel: "submitted", Via: "http", XARF: doc}}}); err != nil {
		t.Fatal(err)
	}
	piece := base64.StdEncoding.EncodeToString(raw)[40:60]
	if got := pages(t, s, withLimit(Query{Text: piece}, 10)); len(got) != 0 {
		t.Errorf("text %q matched evidence: %v", piece, names(g, got))
	}
}

func withLimit(q Query, n int) Query { q.Limit = n; return q }

// A text search examines at most Examine records per call and hands
// back a cursor when it stops, even with an empty page; following the
// cursors finds every match once.
func TestReportTextSearchIsBounded(t *testing.T) {
	s := open(t, t.TempDir())
	g := seedGolden(t, s)
	q := Query{Text: "spamtrap", Limit: 100, Examine: 4} // matches every trap report (evidence_source)
	var all []Report
	calls, empty := 0, 0
	for {
		page, next, err := s.Reports(q)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		if len(page) == 0 {
			empty++
		}
		all = append(all, page...)
		if next == (ID{}) {
			break
		}
		q.Before = next
		if calls > 100 {
			t.Fatal("cursor does not advance")
		}
	}
	want := []string{"01-trap-direct-ipv4", "02-trap-postfix-relay-ipv4", "03-trap-exim-relay-port", "04-trap-sendmail-relay-ipv6",
		"05-trap-exchange-relay", "06-trap-qmail-relay", "07-trap-gmail-forward-ipv6", "08-trap-null-sender", "09-trap-no-envelope"}
	if got := names(g, all); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// 15 records, 4 per call: four calls; the first two see only the
	// six complaints (newest) and the first trap reports.
	if calls != (len(g)+3)/4 || empty != 1 {
		t.Errorf("%d calls, %d empty pages; want %d calls, the first empty", calls, empty, (len(g)+3)/4)
	}
	seen := map[ID]bool{}
	for _, r := range all {
		if seen[r.ID] {
			t.Errorf("report %s listed twice", r.ID)
		}
		seen[r.ID] = true
	}
}

// BenchmarkReportsTextScan: one call that examines ScanBound stored
// trap reports (a real converted document each, evidence cut out as
// ingest stores it) and finds nothing: the worst case of a page of q=.
func BenchmarkReportsTextScan(b *testing.B) {
	s := open(b, b.TempDir())
	raw, _ := os.ReadFile(filepath.Join("..", "xarf", "testdata", "02-trap-postfix-relay-ipv4.eml"))
	doc, _ := os.ReadFile(filepath.Join("..", "xarf", "testdata", "02-trap-postfix-relay-ipv4.json"))
	doc = payloadRE.ReplaceAll(doc, []byte(`"payload":"`+base64.StdEncoding.EncodeToString(raw)+`"`))
	start := time.Now().Add(-time.Hour)
	var entries []Entry
	for i := range ScanBound {
		m := msg(b, "trap")
		m.ID, m.Status = idAt(b, start.Add(time.Duration(i)*time.Millisecond)), StatusConverted
		entries = append(entries, Entry{Message: m, Raw: raw, Report: &Report{ID: m.ID, Channel: "trap", XARF: doc}})
	}
	if err := s.Put(entries); err != nil {
		b.Fatal(err)
	}
	// A literal (ASCII) text is ruled out on the bytes; another one
	// needs each document decoded.
	for name, text := range map[string]string{"literal": "no such text", "decoded": "keine günstigen"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				page, _, err := s.Reports(Query{Text: text, Limit: 100})
				if err != nil || len(page) != 0 {
					b.Fatal(len(page), err)
				}
			}
		})
	}
}
