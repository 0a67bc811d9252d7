package arf

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	cases := []struct {
		in, want              string // want RFC 3339 UTC; "" = unparseable
		dateOnly, zoneAssumed bool
	}{
		{"Thu, 29 Apr 2015 23:34:45 +0000", "2015-04-29T23:34:45Z", false, false},
		{"Tue, 19 Jan 2016 14:32:40 -0500 (EST)", "2016-01-19T19:32:40Z", false, false},
		{"8 Oct 2011 20:15:58 +0000 (GMT)", "2011-10-08T20:15:58Z", false, false},
		{"Thu, 8 Mar 2005 14:00:00 EDT", "2005-03-08T18:00:00Z", false, false},
		{"Thu, 18 Feb 2010 03:21:50 PST", "2010-02-18T11:21:50Z", false, false},
		{"Mon, 18 Jan 2016 23:57:24 UTC", "2016-01-18T23:57:24Z", false, false},
		{"Thu, 29 Apr 2009 00:00:00 -0000 (EST)", "2009-04-29T00:00:00Z", false, false},
		{"Thu, 30 Dec 10 10:37:16 -0800", "2010-12-30T18:37:16Z", false, false},
		{"Mon,  1 Oct 2018 11:20", "2018-10-01T11:20:00Z", false, true},
		{"Thu, 29 Apr 2015 23:34:45", "2015-04-29T23:34:45Z", false, true},
		{"Thu, 29 Apr 2015 23:34:45 XYZ", "2015-04-29T23:34:45Z", false, true},
		{"2015-04-29T23:34:45Z", "2015-04-29T23:34:45Z", false, false},
		{"2015-04-29T23:34:45.123+02:00", "2015-04-29T21:34:45Z", false, false},
		{"2015-04-29 23:34:45 +0200", "2015-04-29T21:34:45Z", false, false},
		{"2015-04-29 23:34:45", "2015-04-29T23:34:45Z", false, true},
		{"2015-04-29", "2015-04-29T00:00:00Z", true, true},
		{"29 Apr 2015", "2015-04-29T00:00:00Z", true, true},
		{"Thu Feb 18 11:22:53 2010", "2010-02-18T11:22:53Z", false, true},
		{"31 Feb 2015 10:00:00 +0000", "", false, false},
		{"yesterday", "", false, false},
		{"", "", false, false},
	}
	for _, c := range cases {
		got, dateOnly, zoneAssumed, ok := ParseDate(c.in)
		if !ok {
			if c.want != "" {
				t.Errorf("ParseDate(%q) failed, want %s", c.in, c.want)
			}
			continue
		}
		if c.want == "" {
			t.Errorf("ParseDate(%q) = %v, want failure", c.in, got)
			continue
		}
		if s := got.UTC().Format(time.RFC3339); s != c.want || dateOnly != c.dateOnly || zoneAssumed != c.zoneAssumed {
			t.Errorf("ParseDate(%q) = %s dateOnly=%v zoneAssumed=%v, want %s %v %v", c.in, s, dateOnly, zoneAssumed, c.want, c.dateOnly, c.zoneAssumed)
		}
	}
}

func TestParseIP(t *testing.T) {
	cases := []struct {
		in, addr, comment string
		port              int
		cleaned           bool
	}{
		{"192.0.2.1", "192.0.2.1", "", 0, false},
		{"fdf1:cb9d:f59e:19b0:0:0:0:122", "fdf1:cb9d:f59e:19b0::122", "", 0, false},
		{"::ffff:192.0.2.7", "192.0.2.7", "", 0, false},
		{"192.0.2.1 (mail.example.com)", "192.0.2.1", "mail.example.com", 0, false},
		{"[IPv6:2001:DB8::1]", "2001:db8::1", "", 0, true},
		{"192.0.2.1:25", "192.0.2.1", "", 25, true},
		{"[2001:db8::1]:587", "2001:db8::1", "", 587, true},
		{"fe80::1%eth0", "fe80::1", "", 0, true},
		{"192.0.2.999", "invalid IP", "", 0, false},
		{"unknown", "invalid IP", "", 0, false},
	}
	for _, c := range cases {
		a, port, comment, cleaned := ParseIP(c.in)
		if a.String() != c.addr || port != c.port || comment != c.comment || cleaned != c.cleaned {
			t.Errorf("ParseIP(%q) = %s %d %q %v, want %s %d %q %v", c.in, a, port, comment, cleaned, c.addr, c.port, c.comment, c.cleaned)
		}
	}
}

func TestIsPublic(t *testing.T) {
	for s, want := range map[string]bool{
		"93.184.216.34": true, "2606:2800:220:1::1": true, "10.1.2.3": false, "192.168.0.1": false,
		"100.64.0.1": false, "127.0.0.1": false, "169.254.1.1": false, "192.0.2.1": false,
		"198.51.100.1": false, "203.0.113.1": false, "2001:db8::1": false, "::1": false, "fc00::1": false,
		"::ffff:93.184.216.34": true, "224.0.0.1": false, "0.1.2.3": false,
	} {
		if got := IsPublic(mustAddr(s)); got != want {
			t.Errorf("IsPublic(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for name, in := range map[string][]byte{"empty": nil, "blank": []byte(" \r\n\n"), "no header": []byte("just text without any colon\n")} {
		r, err := Parse(in)
		if err == nil || r != nil {
			t.Errorf("%s: got report %v, err %v; want an error", name, r, err)
		}
	}
}

// TestDeepNesting: nesting beyond maxDepth is cut with a warning, and the
// work stays small.
func TestDeepNesting(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("From: a@b.example\n")
	for i := range 200 {
		b.WriteString("Content-Type: multipart/mixed; boundary=\"b" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + "\"\n\n")
		b.WriteString("--b" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + "\n")
	}
	b.WriteString("Content-Type: text/plain\n\nhi\n")
	r, err := Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !r.HasWarning(WarnTruncated) || r.Class != ClassNotReport {
		t.Fatalf("class %s warnings %v", r.Class, r.Warnings)
	}
}

// TestLargeInput: a report with a 20 MB embedded message and more header
// lines than maxHeaderFields parses, capped with a warning (linear work; the test only checks the result, never time).
func TestLargeInput(t *testing.T) {
	if testing.Short() {
		t.Skip("large input")
	}
	var b bytes.Buffer
	b.WriteString("From: fbl@isp.example\nContent-Type: multipart/report; report-type=feedback-report; boundary=B\n\n--B\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: x\nVersion: 1\nSource-IP: 93.184.216.34\n\n--B\nContent-Type: message/rfc822\n\n")
	for range 20000 {
		b.WriteString("Received: from a (b [151.101.1.1]) by c; Mon, 6 Jan 2025 09:59:58 +0000\n")
	}
	b.WriteString("\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < 20<<20 {
		b.WriteString(line)
	}
	b.WriteString("--B--\n")
	r, err := Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if r.Class != ClassARF || len(r.Embedded.Received) != maxHeaderFields || !r.HasWarning(WarnMixedLineEndings) || !r.HasWarning(WarnTruncated) {
		t.Fatalf("class %s, %d hops, warnings %v", r.Class, len(r.Embedded.Received), r.Warnings)
	}
}

func TestRecipientAddresses(t *testing.T) {
	r := &Report{
		OriginalRcptTo:   []string{"undisclosed comcast recipient <redacted@comcast.net>", "<A@x.example>"},
		RemovalRecipient: []string{"a@X.example"},
		Embedded: &Embedded{Header: Header{
			{"To", "=?utf-8?Q?J=C3=B6rg?= <jorg@x.example>, b@x.example"},
			{"Delivered-To", "c@x.example"}, {"X-Original-To", "d@x.example"}, {"Envelope-To", "e@x.example"},
			{"X-Envelope-To", "<f@x.example>"}, {"Bcc", "g@x.example"}, {"Cc", "\"h@x.example\" <h@x.example>"},
			{"From", "not-a-recipient@x.example"},
		}, Received: []Received{{For: "i@x.example"}, {For: "redacted"}}},
		Inferred: []Inference{{Field: "original-rcpt-to", Values: []string{"j@x.example"}}},
	}
	got := strings.Join(r.RecipientAddresses(), ",")
	want := "redacted@comcast.net,A@x.example,j@x.example,jorg@x.example,b@x.example,h@x.example,g@x.example,c@x.example,d@x.example,e@x.example,f@x.example,i@x.example"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestFeedbackTypeLine(t *testing.T) {
	for body, want := range map[string]int{
		"Feedback-Type: abuse\n":                 0,
		"x\n  feedback_type : abuse\n":           2,
		"x\r\nFEEDBACK-TYPE:abuse":               3,
		"no feedback-type: here\n":               -1,
		"Feedback-Typed: x\n":                    -1,
		"Feedback-Type abuse\n":                  -1,
		"":                                       -1,
		"Feedback\n-Type: x":                     -1,
		"a\nb\n\tFeedback-type\t:\tauth-failure": 4,
	} {
		if got := feedbackTypeLine([]byte(body)); got != want {
			t.Errorf("feedbackTypeLine(%q) = %d, want %d", body, got, want)
		}
	}
}

func TestParseHeader(t *testing.T) {
	raw := []byte("\xef\xbb\xbfReceived: from a (a [192.0.2.1])\r\n\tby b; Fri, 27 Nov 2026 10:00:00 +0000\r\nSubject: hi\r\n\r\nSubject: not a header\r\n")
	h, err := ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 {
		t.Fatalf("fields = %+v", h)
	}
	if v, _ := h.Get("subject"); v != "hi" {
		t.Errorf("Subject = %q", v)
	}
	if v, _ := h.Get("Received"); !strings.Contains(v, "by b;") {
		t.Errorf("folded Received = %q", v)
	}
	if _, err := ParseHeader([]byte(" \r\n")); err != ErrEmpty {
		t.Errorf("empty: %v", err)
	}
	if _, err := ParseHeader([]byte("\r\njust a body\r\n")); err != ErrNoHeader {
		t.Errorf("no header: %v", err)
	}
}
