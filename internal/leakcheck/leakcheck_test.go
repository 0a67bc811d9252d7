package leakcheck

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// fakeTB records failures instead of failing the test that uses it.
type fakeTB struct {
	testing.TB
	failed []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.failed = append(f.failed, fmt.Sprintf(format, args...))
}

func TestCheckerCatchesLeaks(t *testing.T) {
	const a = "Trap.Box7@Example.net"
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	m5 := md5.Sum([]byte(strings.ToLower(a)))
	cases := map[string]string{
		"literal":    "To: trap.box7@example.NET\r\n\r\nhi\r\n",
		"url":        "X: https://x/?u=trap.box7%40example.net\r\n\r\n",
		"full-url":   "X: https://x/?u=" + fullPercent("trap.box7@example.net") + "\r\n\r\n",
		"b64-align1": "X: " + enc("x"+strings.ToLower(a)+"&id=4") + "\r\n\r\n",
		"b64-align2": "X: " + enc("xy"+a) + "\r\n\r\n",
		"md5":        "X: " + strings.ToUpper(hex.EncodeToString(m5[:])) + "\r\n\r\n",
		"qp-soft":    "Content-Transfer-Encoding: quoted-printable\r\n\r\ntrap.bo=\r\nx7=40example.net\r\n",
		"b64-body":   "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + enc("hello "+a+" bye") + "\r\n",
		"ew":         "Subject: =?utf-8?q?trap=2Ebox7?= =?utf-8?b?" + enc("@example.net") + "?=\r\n\r\n",
		"nested": "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" +
			"Subject: x\r\nContent-Transfer-Encoding: base64\r\n\r\n" + enc(a) + "\r\n--b--\r\n",
	}
	for name, msg := range cases {
		f := &fakeTB{TB: t}
		Check(f, []byte(msg), []string{a})
		if len(f.failed) == 0 {
			t.Errorf("%s: checker missed the leak", name)
		}
	}
	f := &fakeTB{TB: t}
	Check(f, []byte("To: redacted@redacted.invalid\r\n\r\nclean\r\n"), []string{a})
	if len(f.failed) != 0 {
		t.Errorf("checker flagged a clean message: %v", f.failed)
	}
}
