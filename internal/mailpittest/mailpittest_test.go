package mailpittest

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

// A Mailpit whose port another process holds exits, and start says so
// with Mailpit's own words (which Start retries on).
func TestStartNotesPortTaken(t *testing.T) {
	bin := Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m, logs, err := start(t, bin, freePort(t), l.Addr().String())
	if err == nil {
		t.Fatalf("mailpit started on a taken port: %+v", m)
	}
	if !strings.Contains(string(logs), "address already in use") {
		t.Errorf("no 'address already in use' in mailpit's output: %v\n%s", err, logs)
	}
}

// Start returns a Mailpit whose API answers.
func TestStart(t *testing.T) {
	m := Start(t)
	resp, err := http.Get("http://" + m.API + "/api/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("API: %s", resp.Status)
	}
}
