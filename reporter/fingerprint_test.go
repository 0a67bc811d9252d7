package reporter

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// legacyFingerprint is Fingerprint as it was before it used
// internal/header: stored dedup keys must not change for real mail.
func legacyFingerprint(ip netip.Addr, evidence []byte) string {
	s := string(evidence)
	hdr, body := s, ""
	for _, sep := range []string{"\r\n\r\n", "\n\n"} {
		if i := strings.Index(s, sep); i >= 0 {
			hdr, body = s[:i], s[i+len(sep):]
			break
		}
	}
	get := func(name string) string {
		lines := strings.Split(strings.ReplaceAll(hdr, "\r\n", "\n"), "\n")
		for i, l := range lines {
			k, v, ok := strings.Cut(l, ":")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), name) {
				continue
			}
			for j := i + 1; j < len(lines) && (strings.HasPrefix(lines[j], " ") || strings.HasPrefix(lines[j], "\t")); j++ {
				v += " " + lines[j]
			}
			return v
		}
		return ""
	}
	h := sha256.New()
	h.Write([]byte(ip.Unmap().String() + "\x00"))
	for _, n := range []string{"from", "subject"} {
		h.Write([]byte(strings.Join(strings.Fields(get(n)), " ") + "\x00"))
	}
	h.Write([]byte(strings.Join(strings.Fields(body), " ")))
	return hex.EncodeToString(h.Sum(nil))
}

func TestFingerprintUnchanged(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.7")
	var files []string
	for _, g := range []string{"../arf/testdata/*.eml", "../redact/testdata/*.eml", "../xarf/testdata/*.eml", "../intel/testdata/*.eml"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("only %d corpus messages", len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range [][]byte{raw, []byte(strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n", "\r\n"))} {
			if fingerprint(ip, msg) != legacyFingerprint(ip, msg) {
				t.Errorf("%s: fingerprint changed", f)
			}
		}
	}
}

func TestFingerprint(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.7")
	base := "Received: from a\r\nFrom: Spammer <s@example.com>\r\nTo: trap1@example.net\r\nSubject: Buy\r\n now\r\nDate: Mon, 1 Jan 2026 00:00:00 +0000\r\n\r\nHello  there\r\n"
	fp := fingerprint(ip, []byte(base))
	same := []string{
		strings.ReplaceAll(base, "trap1", "trap2"),
		strings.ReplaceAll(base, "Received: from a", "Received: from b"),
		strings.ReplaceAll(base, "\r\n", "\n"),
		strings.ReplaceAll(base, "Subject:", "SUBJECT :"),
		strings.ReplaceAll(base, "Subject: Buy\r\n now", "Subject: Buy now"),
	}
	for _, m := range same {
		if got := fingerprint(ip, []byte(m)); got != fp {
			t.Errorf("different incident for %q", m)
		}
	}
	differ := []string{
		strings.ReplaceAll(base, "Buy", "Sell"),
		strings.ReplaceAll(base, "s@example", "t@example"),
		strings.ReplaceAll(base, "Hello", "Bye"),
	}
	for _, m := range differ {
		if fingerprint(ip, []byte(m)) == fp {
			t.Errorf("same incident for %q", m)
		}
	}
	// An LF message whose body has a CRLF empty line: the body starts at
	// the first empty line, not at the CRLF one.
	lf := strings.ReplaceAll(base, "\r\n", "\n")
	if fingerprint(ip, []byte(lf+"x\r\n\r\ny")) != fingerprint(ip, []byte(lf+"x\n\ny")) {
		t.Error("body cut at a later CRLF empty line")
	}
	if fingerprint(netip.MustParseAddr("192.0.2.8"), []byte(base)) == fp {
		t.Error("address ignored")
	}
}
