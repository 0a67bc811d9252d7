package redact

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"syscall"
	"testing"
)

// benchMessage builds a realistic newsletter of about size bytes: addresses
// in headers, a quoted-printable HTML part with tracking links and a base64
// text part, the shape that costs the most (every view is built).
func benchMessage(size int) []byte {
	a := "trap.box7@example.net"
	link := fmt.Sprintf(`<a href="https://t.example/c?u=%s&e=%s">unsubscribe</a>`,
		base64.RawURLEncoding.EncodeToString([]byte("id=42;"+a)), strings.ReplaceAll(a, "@", "%40"))
	var html, text strings.Builder
	for html.Len()+text.Len() < size*2/3 {
		html.WriteString("<p>Dear customer, our spring offers are here: caf\u00e9, cr\u00e8me &amp; more. " + link + "</p>\n")
		text.WriteString("Dear customer, our spring offers are here. Reply to news@sender.example.\n")
	}
	var qp strings.Builder
	w := quotedprintable.NewWriter(&qp)
	w.Write([]byte(html.String()))
	w.Close()
	b64 := base64.StdEncoding.EncodeToString([]byte(text.String()))
	var lines []string
	for len(b64) > 76 {
		lines, b64 = append(lines, b64[:76]), b64[76:]
	}
	lines = append(lines, b64)
	msg := "Received: from mx.sender.example by mx.example.net for <" + a + ">; Tue, 4 Mar 2025 10:00:00 +0000\r\n" +
		"From: News <news@sender.example>\r\nTo: <" + a + ">\r\nSubject: =?utf-8?q?Spring_offers?=\r\n" +
		"List-Unsubscribe: <https://t.example/u/" + base64.StdEncoding.EncodeToString([]byte(a)) + ">\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		strings.Join(lines, "\r\n") + "\r\n" +
		"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		strings.ReplaceAll(qp.String(), "\n", "\r\n") + "\r\n--alt--\r\n"
	return []byte(msg)
}

func BenchmarkApply(b *testing.B) {
	for _, size := range []int{5 << 10, 100 << 10} {
		msg := benchMessage(size)
		for _, mode := range []Mode{ModeToken, ModeHMAC} {
			b.Run(fmt.Sprintf("%dKB/%s", size>>10, mode), func(b *testing.B) {
				r := mustNew(b, Policy{Mode: mode, HMACKey: testKey, Domains: []string{"trap.example.com"}})
				addrs := append([]string{"trap.box7@example.net"}, MessageRecipients(msg)...)
				if _, _, err := r.Apply(msg, addrs); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := r.Apply(msg, addrs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// stageMessage is a corpus-like trap hit of about 2 KB: a Received chain
// from a public address, the trap address in headers and body, and 20 URLs,
// a third of them carrying the recipient (URL-encoded, base64url, md5).
func stageMessage() []byte {
	const trap = "jo.smith@trap-mailbox.example"
	var b strings.Builder
	b.WriteString("Received: from mail.spam-sender.example (mail.spam-sender.example [198.51.100.23])\r\n" +
		"\tby mx1.isp.example (Postfix) with ESMTP id 4ZxY7; for <" + trap + ">;\r\n\tTue, 4 Mar 2025 10:00:00 +0000\r\n" +
		"From: \"Deals\" <offers@spam-sender.example>\r\nTo: <" + trap + ">\r\nSubject: Your exclusive offer\r\n" +
		"Message-ID: <20250304100000.4ZxY7@spam-sender.example>\r\nDate: Tue, 4 Mar 2025 10:00:00 +0000\r\n" +
		"List-Unsubscribe: <https://u.spam-sender.example/u?e=" + strings.ReplaceAll(trap, "@", "%40") + ">\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n")
	sum := md5.Sum([]byte(trap))
	for i := range 20 {
		var q string
		switch i % 6 {
		case 0:
			q = "e=" + strings.ReplaceAll(trap, "@", "%40")
		case 2:
			q = "t=" + base64.RawURLEncoding.EncodeToString([]byte("uid=8812;"+trap))
		case 4:
			q = "h=" + hex.EncodeToString(sum[:])
		default:
			q = fmt.Sprintf("cid=%d&src=mail", 4711+i)
		}
		fmt.Fprintf(&b, "<a href=\"https://c%d.spam-sender.example/t/%d?%s\">offer %d</a><br>\r\n", i%3, i, q, i)
	}
	b.WriteString("<p>This mail was sent to " + trap + ".</p></body></html>\r\n")
	return []byte(b.String())
}

// BenchmarkStage is the redaction stage of the report path for one trap
// hit: a channel redacting its trap domain, the envelope recipient and the
// message's recipients passed as ingest passes them.
func BenchmarkStage(b *testing.B) {
	msg := stageMessage()
	for _, mode := range []Mode{ModeToken, ModeHMAC} {
		b.Run(fmt.Sprintf("2KB-20URLs/%s", mode), func(b *testing.B) {
			r := mustNew(b, Policy{Mode: mode, HMACKey: testKey, Domains: []string{"trap-mailbox.example"}})
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				addrs := append([]string{"jo.smith@trap-mailbox.example"}, MessageRecipients(msg)...)
				if _, _, err := r.Apply(msg, addrs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkLarge shows how many full copies of a large message redaction
// makes: B/op divided by the message size. "plain" is text with one
// occurrence at the end; "qp-html" is quoted-printable HTML with escapes and
// URL-encoded occurrences throughout, which is searched in decoded
// renderings too.
func BenchmarkLarge(b *testing.B) {
	const trap = "jo.smith@trap-mailbox.example"
	plain := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n", (10<<20)/75)
	html := strings.Repeat("<p class=3D\"x\">Lorem ipsum <a href=3D\"https://t.example/c?e=3Djo.smith%40trap-mailbox.example&k=3D1\">dolor</a> sit.</p>\r\n", (10<<20)/110)
	for _, c := range []struct{ name, hdr, body string }{
		{"plain", "Content-Type: text/plain\r\n", plain},
		{"qp-html", "Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n", html},
	} {
		b.Run(c.name, func(b *testing.B) {
			msg := []byte("To: <" + trap + ">\r\nSubject: big\r\n" + c.hdr + "\r\n" + c.body + "sent to " + trap + "\r\n")
			r := mustNew(b, Policy{Domains: []string{"trap-mailbox.example"}})
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				addrs := append([]string{trap}, MessageRecipients(msg)...)
				if _, _, err := r.Apply(msg, addrs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user and system CPU time in nanoseconds: on a
// shared machine it varies much less than wall-clock time.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
