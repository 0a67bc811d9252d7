package xarf

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const smallTrap = "Received: from mail.spam.example (mail.spam.example [198.51.100.5])\r\n" +
	"\tby mx.trap.example (Postfix) with ESMTP id 1; Sun, 01 Mar 2026 09:00:00 +0000\r\n" +
	"From: Spammer <s@spam.example>\r\nSubject: hi\r\nMessage-ID: <1@spam.example>\r\n\r\nbody\r\n"

func trapInput(msg string) Input {
	in := corpusInput([]byte(msg))
	in.Envelope = &Envelope{Peer: netip.MustParseAddrPort("198.51.100.5:40000"), MailFrom: "s@spam.example"}
	return in
}

// TestHugeMessage: above 5 MiB the evidence is the header alone, and the
// description and tags say so.
func TestHugeMessage(t *testing.T) {
	head := strings.SplitAfter(smallTrap, "\r\n\r\n")[0]
	msg := head + strings.Repeat("spam spam spam spam spam spam spam spam spam spam\r\n", MaxEvidenceSize/50+10)
	if len(msg) <= MaxEvidenceSize {
		t.Fatal("test message too small")
	}
	doc, err := FromTrap(trapInput(msg))
	if err != nil {
		t.Fatal(err)
	}
	mustValid(t, "huge", marshal(t, doc))
	ev := doc.Evidence[0]
	data, _ := base64.StdEncoding.DecodeString(ev.Payload)
	if string(data) != head || ev.ContentType != "text/rfc822-headers" || *ev.Size != int64(len(head)) {
		t.Errorf("evidence: %s, %d bytes: %q", ev.ContentType, len(data), data)
	}
	if !containsString(doc.Tags, "evidence:headers-only") || !strings.Contains(doc.Description, "header only") {
		t.Errorf("tags %v, description %s", doc.Tags, doc.Description)
	}
	// Exactly at the limit the whole message is kept.
	exact := msg[:MaxEvidenceSize]
	doc, err = FromTrap(trapInput(exact))
	if err != nil {
		t.Fatal(err)
	}
	if doc.Evidence[0].ContentType != "message/rfc822" || *doc.Evidence[0].Size != MaxEvidenceSize {
		t.Errorf("at the limit: %s %d", doc.Evidence[0].ContentType, *doc.Evidence[0].Size)
	}
}

func TestHeaderBlock(t *testing.T) {
	for in, want := range map[string]string{
		"A: b\r\n\r\nbody":   "A: b\r\n\r\n",
		"A: b\n\nbody":       "A: b\n\n",
		"A: b\nC: d\n":       "A: b\nC: d\n",
		"\r\nbody":           "\r\n",
		"\nbody":             "\n",
		"\n\nbody":           "\n", // the body starts with an empty line
		"\r\n\r\nbody":       "\r\n",
		"A: b\n\r\nmixed":    "A: b\n\r\n",
		"no header end here": "no header end here",
	} {
		if got := string(headerBlock([]byte(in))); got != want {
			t.Errorf("headerBlock(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestInputErrors(t *testing.T) {
	for name, mod := range map[string]func(*Input){
		"bad id":      func(in *Input) { in.ReportID = "42" },
		"no reporter": func(in *Input) { in.Reporter = Contact{} },
		"bad sender":  func(in *Input) { in.Sender.Contact = "not an address" },
		"bad domain":  func(in *Input) { in.Sender.Domain = "exa mple.net" },
		"no message":  func(in *Input) { in.Message = nil },
		"no received": func(in *Input) { in.Received = time.Time{} },
	} {
		in := trapInput(smallTrap)
		mod(&in)
		if _, err := FromTrap(in); !errors.Is(err, ErrInput) {
			t.Errorf("%s: FromTrap: %v", name, err)
		}
		if _, err := FromARF(nil, in); !errors.Is(err, ErrInput) {
			t.Errorf("%s: FromARF: %v", name, err)
		}
	}
}

func TestSMTPFromAndTo(t *testing.T) {
	for _, c := range []struct {
		from, want, tag string
	}{
		{"s@spam.example", "s@spam.example", ""},
		{"<s@spam.example>", "s@spam.example", ""},
		{"redacted@redacted.invalid", "", "smtp-from:redacted"},
		{"not an address", "", "smtp-from:invalid"},
		{"", "", "smtp-from:null"},
	} {
		in := trapInput(smallTrap)
		in.Envelope.MailFrom = c.from
		doc, err := FromTrap(in)
		if err != nil {
			t.Fatal(err)
		}
		if doc.SMTPFrom != c.want || (c.tag != "" && !containsString(doc.Tags, c.tag)) {
			t.Errorf("MAIL FROM %q: smtp_from %q tags %v", c.from, doc.SMTPFrom, doc.Tags)
		}
		if (doc.Protocol == ProtocolSMTP) != (c.want != "") {
			t.Errorf("MAIL FROM %q: protocol %s", c.from, doc.Protocol)
		}
	}
	in := trapInput(smallTrap)
	in.RecipientsRedacted, in.Recipient = false, "trap@trap.example"
	doc, err := FromTrap(in)
	if err != nil || doc.SMTPTo != "trap@trap.example" || containsString(doc.Tags, "redacted:recipients") {
		t.Errorf("unredacted recipient: %v %+v", err, doc)
	}
	in.RecipientsRedacted = true
	if doc, _ := FromTrap(in); doc.SMTPTo != "" || strings.Contains(doc.Description, "trap@trap.example") {
		t.Errorf("redacted recipient leaked: %+v", doc)
	}
}

func TestFromARFRefusals(t *testing.T) {
	report := func(ft string) string {
		return "From: fbl@provider.example\r\nSubject: FBL\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n" +
			"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: " + ft + "\r\nUser-Agent: x/1\r\nVersion: 1\r\nSource-IP: 198.51.100.9\r\n" +
			"--b--\r\n"
	}
	if _, err := FromARF(nil, corpusInput([]byte(report("not-spam")))); !errors.Is(err, ErrNotAbuse) {
		t.Errorf("not-spam: %v", err)
	}
	for _, ft := range []string{"auth-failure", "dmarc", "other", "opt-out", "miscategorized", "something-new"} {
		if doc, err := FromARF(nil, corpusInput([]byte(report(ft)))); !errors.Is(err, ErrNotAbuse) {
			t.Errorf("%s: want ErrNotAbuse, got %v %+v", ft, err, doc)
		}
	}
	// fraud and virus: XARF v4.2.0's content/fraud and content/malware
	// describe a web site or a file at a URL (url required), not a
	// message from an IP address, so they stay messaging/spam, tagged and
	// described.
	for ft, words := range map[string]string{"virus": "virus", "fraud": "fraud"} {
		doc, err := FromARF(nil, corpusInput([]byte(report(ft))))
		if err != nil || doc.SourceIdentifier != "198.51.100.9" || !containsString(doc.Tags, "feedback-type:"+ft) || doc.EvidenceSource != SourceUserComplaint {
			t.Fatalf("%s: %v %+v", ft, err, doc)
		}
		if doc.Category != CategoryMessaging || doc.Type != TypeSpam || !strings.Contains(doc.Description, words) || !strings.Contains(doc.Description, "no messaging type") {
			t.Errorf("%s: %s/%s, description %q", ft, doc.Category, doc.Type, doc.Description)
		}
		mustValid(t, ft, marshal(t, doc))
	}
	plain := "From: a@b.example\r\nSubject: hello\r\n\r\nhi\r\n"
	if _, err := FromARF(nil, corpusInput([]byte(plain))); !errors.Is(err, ErrNotReport) {
		t.Errorf("plain mail: %v", err)
	}
	if !bytes.Contains([]byte(report("abuse")), []byte("Source-IP")) {
		t.Fatal("bad test report")
	}
}

// TestRefusalReasonsWhole: the reason a message yields no report is kept
// whole and readable (it used to be squeezed into a 40-character tag word,
// "delivery-status-notification-rfc-3464-bo").
func TestRefusalReasonsWhole(t *testing.T) {
	dsn := "From: MAILER-DAEMON@mx.example\r\nTo: a@b.example\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nbounce\r\n" +
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; x@y.example\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"--b--\r\n"
	_, err := FromARF(nil, corpusInput([]byte(dsn)))
	if !errors.Is(err, ErrNotReport) {
		t.Fatalf("DSN: %v", err)
	}
	if want := "delivery status notification (RFC 3464 bounce)"; !strings.Contains(err.Error(), want) {
		t.Errorf("reason %q does not hold %q whole", err, want)
	}
	trap := "Received: from a-very-long-host-name-that-goes-on-and-on.relay.example.org by mx.trap.example; Sun, 01 Mar 2026 09:00:00 +0000\r\n" +
		"Subject: hi\r\n\r\nbody\r\n"
	in := trapInput(trap)
	in.Envelope = nil
	_, err = FromTrap(in)
	if !errors.Is(err, ErrNoOrigin) || !strings.Contains(err.Error(), "a-very-long-host-name-that-goes-on-and-on.relay.example.org") {
		t.Errorf("trap without client address: %v", err)
	}
}

// TestDescriptionSaysWhatWasRedacted: the description, tags and evidence
// say what this channel's policy did. A channel that does not redact used
// to get "Recipient addresses were redacted" only by luck of omission;
// the mail carrying the report claimed removal for every channel.
func TestDescriptionSaysWhatWasRedacted(t *testing.T) {
	for _, c := range []struct {
		name                string
		recipients, listed  bool
		pseudonyms          bool
		tag, says, evidence string
		smtpTo              string
	}{
		{"none", false, false, false, "redacted:none", "Nothing was redacted: recipient addresses appear as received", ", not redacted", "trap@trap.example"},
		{"listed", false, true, false, "redacted:listed", "other recipient addresses appear as received", ", listed addresses redacted", "trap@trap.example"},
		{"recipients", true, true, false, "redacted:recipients", "replaced by the placeholder redacted@redacted.invalid", ", recipient addresses redacted", ""},
		{"hmac", true, true, true, "redacted:recipients", "keyed pseudonyms", ", recipient addresses redacted", ""},
	} {
		in := trapInput(smallTrap)
		in.RecipientsRedacted, in.ListRedacted, in.Pseudonyms, in.Recipient = c.recipients, c.listed, c.pseudonyms, "trap@trap.example"
		doc, err := FromTrap(in)
		if err != nil {
			t.Fatal(err)
		}
		mustValid(t, c.name, marshal(t, doc))
		if !containsString(doc.Tags, c.tag) || !strings.Contains(doc.Description, c.says) || doc.SMTPTo != c.smtpTo {
			t.Errorf("%s: tags %v smtp_to %q description %q", c.name, doc.Tags, doc.SMTPTo, doc.Description)
		}
		if !strings.HasSuffix(doc.Evidence[0].Description, c.evidence) {
			t.Errorf("%s: evidence description %q", c.name, doc.Evidence[0].Description)
		}
		if !c.recipients && strings.Contains(doc.Description, "were redacted from this report") {
			t.Errorf("%s: claims redaction: %q", c.name, doc.Description)
		}
	}
}
