package reporter

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/xarf"
)

// renderedParts renders the report of id (dry run), parses the message
// with go-message as a mail client would, and returns the text of its
// first part and the bytes of its xarf.json attachment.
func renderedParts(t *testing.T, e *env, id store.ID) (text string, doc []byte) {
	t.Helper()
	e.run(t, func() bool { return e.status(t, id) == store.OutboxDryRun })
	raw, err := e.st.OutboxMail(id)
	if err != nil {
		t.Fatal(err)
	}
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("reading the rendered message: %v", err)
	}
	mr := ent.MultipartReader()
	if mr == nil {
		t.Fatal("rendered message is not multipart")
	}
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		body, err := io.ReadAll(p.Body) // transfer-decoded by go-message
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		ct, _, _ := p.Header.ContentType()
		switch {
		case i == 0:
			if ct != "text/plain" {
				t.Fatalf("first part is %s, want text/plain", ct)
			}
			text = string(body)
		case ct == "application/json":
			doc = body
		}
	}
	if doc == nil {
		t.Fatal("no xarf.json part")
	}
	return text, doc
}

func validXARF(t *testing.T, doc []byte) *xarf.Report {
	t.Helper()
	v, err := xarf.EmbeddedValidator()
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(doc); err != nil {
		t.Errorf("xarf.json is not valid XARF: %v", err)
	}
	var rep xarf.Report
	if err := rep.UnmarshalJSON(doc); err != nil {
		t.Fatal(err)
	}
	return &rep
}

// TestRenderedTextForAHuman: the first part tells a person at the desk
// what happened, when, from where, through which channel, how to reply,
// and shows the reported message's header as stored; the machine parts
// are unchanged and the XARF document still validates.
func TestRenderedTextForAHuman(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, trapChannel+smarthostYAML(d.addr, false, ""), Options{})
	id := e.trapHit(t, "trap", "victim@trap.reporter.test", originIP, "buy now")
	text, doc := renderedParts(t, e, id)
	rep := validXARF(t, doc)
	for _, want := range []string{
		"What:      spam received by a spam trap",
		"When:      2026-11-27T10:00:00Z",
		"Source IP: " + originIP,
		"Channel:   trap",
		"Report ID: " + rep.ReportID,
		"To reply, write to abuse@reporter.test",
		"The reported message's header, as stored:",
		"From: Spammer <spammer@spam.example>",
		"Subject: cheap pills",
		"Received: from spam.example (spam.example [" + originIP + "])",
		"To: redacted@redacted.invalid",
		"with the recipients' addresses replaced by placeholders.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text part lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(strings.ToLower(text), "victim") {
		t.Errorf("text part names the trap address:\n%s", text)
	}
}

// TestRenderedTextSaysRecipientsAreSent: for a channel that does not
// redact, the mail says that it carries the recipients' addresses. It
// used to say "with the recipients' addresses removed" while smtp_to and
// the evidence named them.
func TestRenderedTextSaysRecipientsAreSent(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, `
channels:
  - name: open-trap
    kind: trap
    addresses: ["*@open.reporter.test"]
`+smarthostYAML(d.addr, false, ""), Options{})
	id := e.trapHit(t, "open-trap", "victim@open.reporter.test", originIP, "buy now")
	text, doc := renderedParts(t, e, id)
	rep := validXARF(t, doc)
	if rep.SMTPTo != "victim@open.reporter.test" {
		t.Fatalf("smtp_to = %q: the test needs a report that carries the recipient", rep.SMTPTo)
	}
	if strings.Contains(text, "removed") || strings.Contains(text, "replaced") {
		t.Errorf("text claims redaction of a report that carries recipients:\n%s", text)
	}
	for _, want := range []string{"including its recipients' addresses as received", "Recipient: victim@open.reporter.test"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(rep.Description, "Nothing was redacted") {
		t.Errorf("XARF description: %q", rep.Description)
	}
}
