package sse

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A real listener: the headers, the opening comment and an event reach
// the client as they are sent, not when the handler ends.
func TestStreamFlushesEachEvent(t *testing.T) {
	sent := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Open(w, time.Second)
		if err != nil {
			t.Error(err)
			return
		}
		if !s.Hello() || !s.Send([]byte("event: x\ndata: 1\n\n")) || !s.Heartbeat() {
			t.Error("send failed")
		}
		<-sent // hold the response open: what the client read was flushed
	}))
	defer srv.Close()
	defer close(sent)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Errorf("headers: %v", resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	var got []string
	for len(got) < 7 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, strings.TrimSuffix(line, "\n"))
	}
	want := []string{": subscribed", "retry: 3000", "", "event: x", "data: 1", "", ": heartbeat"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stream = %q, want %q", got, want)
	}
}

// A client that stops reading makes Send fail within the write deadline
// instead of blocking the handler for good.
func TestSendFailsWhenTheClientStopsReading(t *testing.T) {
	done := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Open(w, 200*time.Millisecond)
		if err != nil {
			t.Error(err)
			return
		}
		chunk := []byte("data: " + strings.Repeat("x", 64<<10) + "\n\n")
		for range 10000 { // far more than the socket buffers hold
			if !s.Send(chunk) {
				done <- false
				return
			}
		}
		done <- true
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read
	if ok := <-done; ok {
		t.Error("every send succeeded though the client read nothing")
	}
}
