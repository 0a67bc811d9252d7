package arf

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBuildRoundTrip(t *testing.T) {
	orig := []byte("Received: from out.sender.example (out.sender.example [93.184.216.34])\n\tby mx.isp.example; Mon, 6 Jan 2025 09:59:58 +0000\nFrom: x@sender.example\nTo: victim@isp.example\nSubject: spam\n\nbuy now\n")
	arrival := time.Date(2025, 1, 6, 9, 59, 58, 0, time.UTC)
	fb := &Report{
		FeedbackType: "abuse", UserAgent: "xarfd/0.1", Version: "1",
		ArrivalDate:      &Date{Time: arrival},
		SourceIP:         &IP{Addr: netip.MustParseAddr("93.184.216.34")},
		SourcePort:       2525,
		OriginalMailFrom: "<bulk@sender.example>",
		OriginalRcptTo:   []string{"<victim@isp.example>", "<other@isp.example>"},
		ReportedDomain:   []string{"sender.example"},
		ReportedURI:      []string{"http://sender.example/buy"},
		AuthenticationResults: []string{"mx.isp.example; spf=pass smtp.mailfrom=sender.example; dkim=pass header.d=sender.example; " +
			"dmarc=pass header.from=sender.example; arc=none (a long value that must be folded over several lines)"},
		Incidents: 2,
		Unknown:   []Field{{"X-Custom", "yes"}},
	}
	for _, headersOnly := range []bool{false, true} {
		out, err := Build(BuildRequest{
			From: "abuse-reports@xarfd.example", To: "abuse@sender.example", Subject: "Abuse report: 93.184.216.34 ✓",
			MessageID: "<1@xarfd.example>", Date: arrival, Feedback: fb, Original: orig, HeadersOnly: headersOnly,
			Boundary: "fixed-boundary",
		})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) || bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\r")) {
			t.Fatal("output has a line ending other than CRLF")
		}
		for _, line := range strings.Split(string(out), "\r\n") {
			if len(line) > 998 {
				t.Fatalf("line longer than 998: %q", line[:80])
			}
		}
		r, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		if r.Class != ClassARF || len(r.Warnings) != 0 {
			t.Fatalf("class %s, warnings %v\n%s", r.Class, r.Warnings, out)
		}
		eq(t, "type", r.FeedbackType, "abuse")
		eq(t, "ua", r.UserAgent, "xarfd/0.1")
		eq(t, "arrival", r.ArrivalDate.Time.Equal(arrival), true)
		eq(t, "ip", r.SourceIP.Addr, fb.SourceIP.Addr)
		eq(t, "port", r.SourcePort, 2525)
		eq(t, "mail from", r.OriginalMailFrom, fb.OriginalMailFrom)
		eq(t, "rcpt", slices.Equal(r.OriginalRcptTo, fb.OriginalRcptTo), true)
		eq(t, "auth results survive folding", r.AuthenticationResults[0], fb.AuthenticationResults[0])
		eq(t, "incidents", r.Incidents, 2)
		eq(t, "unknown", len(r.Unknown) == 1 && r.Unknown[0] == Field{"X-Custom", "yes"}, true)
		eq(t, "subject", r.Header.Decoded("Subject"), "Abuse report: 93.184.216.34 ✓")
		eq(t, "message-id", r.Header.Decoded("Message-ID"), "<1@xarfd.example>")
		eq(t, "headers only", r.Embedded.HeadersOnly, headersOnly)
		eq(t, "embedded to", r.Embedded.Header.Decoded("To"), "victim@isp.example")
		eq(t, "body kept", bytes.Contains(r.Embedded.Raw, []byte("buy now")), !headersOnly)
	}
}

// TestBuildHeadersOnlyCut: the header ends at the first empty line, even
// when that is the first line (then there is no header to send).
func TestBuildHeadersOnlyCut(t *testing.T) {
	for orig, want := range map[string]string{
		"From: c@z.example\r\nSubject: s\r\n\r\nbody: text\n\nmore\n": "From: c@z.example\r\nSubject: s\r\n",
		"\nX-Body: secret\n\nmore\n":                                  "",
	} {
		out, err := Build(BuildRequest{From: "a@x.example", To: "b@y.example", MessageID: "<m@x.example>", Date: time.Unix(0, 0),
			Feedback: &Report{FeedbackType: "abuse"}, Original: []byte(orig), HeadersOnly: true, Boundary: "b0"})
		if err != nil {
			t.Fatal(err)
		}
		_, part, _ := bytes.Cut(out, []byte("Content-Type: text/rfc822-headers\r\nContent-Disposition: inline\r\n\r\n"))
		part, _, _ = bytes.Cut(part, []byte("\r\n--b0--"))
		if string(part) != want {
			t.Errorf("%q: headers part %q, want %q", orig, part, want)
		}
	}
}

func TestBuildFeedbackTypes(t *testing.T) {
	for _, ft := range []string{"abuse", "fraud", "virus", "other", "not-spam", "opt-out", "auth-failure", "xarf"} {
		fb := &Report{FeedbackType: ft, AuthFailure: "dmarc"}
		out, err := Build(BuildRequest{From: "a@x.example", To: "b@y.example", MessageID: "<m@x.example>", Date: time.Unix(0, 0), Feedback: fb, Original: []byte("From: c@z.example\n\nhi\n")})
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		if r.Class != ClassARF || r.FeedbackType != ft || r.HasWarning(WarnFeedbackType) {
			t.Errorf("%s: class %s type %q warnings %v", ft, r.Class, r.FeedbackType, r.Warnings)
		}
	}
}

func TestBuildRejectsInjection(t *testing.T) {
	base := BuildRequest{From: "a@x.example", To: "b@y.example", MessageID: "<m@x.example>", Date: time.Unix(0, 0)}
	cases := map[string]func(*BuildRequest){
		"no feedback type": func(r *BuildRequest) { r.Feedback = &Report{} },
		"newline in value": func(r *BuildRequest) { r.Feedback = &Report{FeedbackType: "abuse", OriginalMailFrom: "a\r\nBcc: x@y"} },
		"bad unknown name": func(r *BuildRequest) {
			r.Feedback = &Report{FeedbackType: "abuse", Unknown: []Field{{"Bad Name", "v"}}}
		},
		"invalid source ip": func(r *BuildRequest) { r.Feedback = &Report{FeedbackType: "abuse", SourceIP: &IP{Raw: "nope"}} },
		"newline in from":   func(r *BuildRequest) { r.Feedback = &Report{FeedbackType: "abuse"}; r.From = "a@x\nBcc: y" },
		"boundary in orig": func(r *BuildRequest) {
			r.Feedback = &Report{FeedbackType: "abuse"}
			r.Boundary = "B"
			r.Original = []byte("X: y\n\n--B\n")
		},
		"missing message-id": func(r *BuildRequest) { r.Feedback = &Report{FeedbackType: "abuse"}; r.MessageID = "" },
	}
	for name, mod := range cases {
		req := base
		mod(&req)
		if _, err := Build(req); err == nil {
			t.Errorf("%s: Build accepted it", name)
		}
	}
}
