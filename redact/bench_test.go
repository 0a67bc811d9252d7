package redact

import (
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"strings"
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
