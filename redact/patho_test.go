package redact

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestPathologicalInputs feeds inputs built to trigger super-linear work.
// It logs durations (tests never assert on speed) and checks the outcome.
func TestPathologicalInputs(t *testing.T) {
	r := mustNew(t, Policy{Domains: []string{"trap.example"}, LocalPart: true})
	nest := "x"
	for i := 0; i < 40; i++ {
		nest = "Content-Type: multipart/mixed; boundary=b" + string(rune('a'+i%26)) + "\r\n\r\n--b" + string(rune('a'+i%26)) + "\r\n" + nest + "\r\n--b" + string(rune('a'+i%26)) + "--\r\n"
	}
	for name, raw := range map[string]string{
		"ew":      "Subject: " + strings.Repeat("=?utf-8?q?a=40b?= ", 50000) + "\r\n\r\n",
		"pct":     "\r\n" + strings.Repeat("%4", 300000),
		"eq":      "\r\n" + strings.Repeat("=\r\n", 300000),
		"at":      "\r\n" + strings.Repeat("a.", 200000) + strings.Repeat("@trap.example", 1000),
		"b64":     "\r\n" + strings.Repeat("dHJhcC5ib3g3QGV4YW1wbGUubmV0", 30000),
		"fold":    "X: " + strings.Repeat("a\r\n ", 200000) + "\r\n\r\n",
		"nest":    nest + strings.Repeat("y", 500000),
		"entity":  "\r\n" + strings.Repeat("&#", 300000),
		"trapset": "\r\n" + strings.Repeat("trap.box7@example.net ", 30000),
	} {
		start := time.Now()
		out, _, err := r.Apply([]byte(raw), []string{trap})
		if err != nil && !errors.Is(err, ErrUnredactable) {
			t.Errorf("%s: %v", name, err)
		}
		if err == nil && strings.Contains(string(out), "trap.box7@example.net") {
			t.Errorf("%s: literal survived", name)
		}
		t.Logf("%s: %d bytes %v err=%v", name, len(raw), time.Since(start), err != nil)
	}
}
