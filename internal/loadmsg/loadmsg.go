// Package loadmsg builds the messages that measure xarfd's report path:
// trap hits relayed with a Received hop from a public address and ARF
// reports with a public Source-IP, both carrying the recipient in
// headers, body and URLs the way newsletters do. The load tool sends
// them and the per-stage benchmarks take them apart, so that both
// measure the same bytes.
//
// A generated message must take the report path: stored as a report with
// an outbox entry. A documentation address (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24) would not do for that measure: arf.IsPublic treats it as
// reserved, and the reporter withholds reports about it.
package loadmsg

import (
	"fmt"
	"strings"
	"time"
)

// SourceIP is the spamming host of every generated message. It is a
// globally routable address (arf.IsPublic), so origin inference keeps it;
// nothing ever connects to it.
const SourceIP = "81.2.69.142"

// Kinds of message.
const (
	// Trap is a spam-trap hit relayed by our MX: its origin is the
	// Received hop from SourceIP.
	Trap = "trap"
	// ARF is a feedback-loop report (RFC 5965) with Source-IP SourceIP;
	// the complained-about message is inside it.
	ARF = "arf"
)

// urlsPer2K is how many recipient-bearing URLs a message carries per
// 2 KB: tracking and unsubscribe links, the redactor's usual work.
const urlsPer2K = 20

// Message returns a message of kind of about size bytes (at least the
// headers), with CRLF line endings, addressed to rcpt. seq varies the
// Message-ID.
//
// Its dates are the current hour: a complaint whose Arrival-Date is older
// than reporter.max_age is stored withheld, not reported, and would no
// longer measure the report path.
func Message(kind string, size int, rcpt string, seq int) ([]byte, error) {
	switch kind {
	case Trap:
		return trap(size, rcpt, seq), nil
	case ARF:
		return arfReport(size, rcpt, seq), nil
	}
	return nil, fmt.Errorf("loadmsg: unknown kind %q (want %s or %s)", kind, Trap, ARF)
}

// spam is the header and body of the spam message, padded so that the
// whole message (with the extra bytes a wrapper adds) is about size.
func spam(size, extra int, rcpt string, seq int) string {
	enc := strings.ReplaceAll(rcpt, "@", "%40")
	var b strings.Builder
	b.WriteString("Received: from mail.sender.example (mail.sender.example [" + SourceIP + "])\r\n" +
		"\tby mx.trap.localhost (Postfix) with ESMTP id 4F1A2B3C4D\r\n" +
		"\tfor <" + rcpt + ">; " + when() + " (UTC)\r\n" +
		"From: \"Deals\" <offers@sender.example>\r\n" +
		"To: " + rcpt + "\r\n" +
		"Subject: Your exclusive offer expires today\r\n" +
		"Date: " + when() + "\r\n" +
		fmt.Sprintf("Message-ID: <20261127100000.%08d@sender.example>\r\n", seq) +
		"List-Unsubscribe: <https://sender.example/unsubscribe?e=" + enc + ">\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Dear " + rcpt + ", this offer is only valid today.\r\n")
	urls := max(1, size*urlsPer2K/2048)
	for i := 0; b.Len()+extra < size; i++ {
		if i < urls {
			fmt.Fprintf(&b, "Claim it: https://sender.example/c/%d?u=%s&src=mail\r\n", i, enc)
		} else {
			b.WriteString("Click the link above to claim the offer before it is gone, today only.\r\n")
		}
	}
	return b.String()
}

func trap(size int, rcpt string, seq int) []byte {
	return []byte(spam(size, 0, rcpt, seq))
}

// arfHead is the report's own header and its human-readable and
// machine-readable parts; the spam message follows, then the end.
const arfHead = "From: Feedback Loop <fbl@isp.example>\r\n" +
	"To: fbl@localhost\r\n" +
	"Subject: FW: Your exclusive offer expires today\r\n" +
	"Date: %[3]s\r\n" +
	"Message-ID: <fbl-%[1]08d@isp.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=feedback-report; boundary=\"fbl-boundary\"\r\n" +
	"\r\n" +
	"--fbl-boundary\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"\r\n" +
	"This is an email abuse report for an email message received from IP " + SourceIP + ".\r\n" +
	"\r\n" +
	"--fbl-boundary\r\n" +
	"Content-Type: message/feedback-report\r\n" +
	"\r\n" +
	"Feedback-Type: abuse\r\n" +
	"User-Agent: ISP-FBL/1.0\r\n" +
	"Version: 1\r\n" +
	"Original-Mail-From: <bounce@sender.example>\r\n" +
	"Original-Rcpt-To: <%[2]s>\r\n" +
	"Arrival-Date: %[3]s\r\n" +
	"Reporting-MTA: dns; mx.isp.example\r\n" +
	"Source-IP: " + SourceIP + "\r\n" +
	"\r\n" +
	"--fbl-boundary\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"Content-Disposition: inline\r\n" +
	"\r\n"

const arfTail = "\r\n--fbl-boundary--\r\n"

func arfReport(size int, rcpt string, seq int) []byte {
	head := fmt.Sprintf(arfHead, seq, rcpt, when())
	return []byte(head + spam(size, len(head)+len(arfTail), rcpt, seq) + arfTail)
}

// when is the current hour in RFC 5322 form, of a fixed length (so that
// sizes do not move with the date).
func when() string {
	return time.Now().UTC().Truncate(time.Hour).Format("Mon, 02 Jan 2006 15:04:05 -0700")
}
