package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/metrics"
)

// openLive opens a live stream at path and, when it is admitted, waits
// for its opening comment; cancel closes it.
func openLive(t *testing.T, e *env, path string) (resp *http.Response, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tokRead)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode == http.StatusOK {
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || line != ": subscribed\n" {
			t.Fatalf("opening line %q %v", line, err)
		}
	}
	return resp, cancel
}

func refusedStreams(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "xarfd_stream_refused_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if l := s.GetLabel(); len(l) == 1 && l[0].GetName() == "interface" && l[0].GetValue() == metrics.StreamAPI {
				return s.GetCounter().GetValue()
			}
		}
	}
	t.Fatal(`no xarfd_stream_refused_total{interface="api"}`)
	return 0
}

// The API keeps at most MaxStreams live streams open, of both kinds
// together: the next one is refused with 503 and Retry-After, counted
// and logged, until one of the open ones ends.
func TestStreamLimit(t *testing.T) {
	const limit = 3
	e := newEnv(t, true, func(o *Options) { o.MaxStreams = limit })
	var cancels []func()
	for i := 0; i < limit; i++ {
		path := "/api/v1/stream"
		if i == limit-1 {
			path = "/api/v1/stream/cases"
		}
		resp, cancel := openLive(t, e, path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d of %d: %d", i+1, limit, resp.StatusCode)
		}
		cancels = append(cancels, cancel)
	}
	for _, path := range []string{"/api/v1/stream", "/api/v1/stream/cases"} {
		resp, _ := openLive(t, e, path)
		var body struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "30" ||
			!strings.Contains(body.Error, "too many live streams") {
			t.Fatalf("%s beyond the limit: %d %v %+v", path, resp.StatusCode, resp.Header, body)
		}
	}
	if n := refusedStreams(t, e); n != 2 {
		t.Errorf("xarfd_stream_refused_total = %v, want 2", n)
	}
	if !strings.Contains(e.log.String(), "live stream refused: too many open") {
		t.Errorf("no log line: %s", e.log.String())
	}

	// One ends: its place is free again once its handler has returned,
	// which follows the client's close by a moment (the deadline only
	// detects a hang).
	cancels[0]()
	deadline := time.Now().Add(generous)
	for {
		resp, cancel := openLive(t, e, "/api/v1/stream")
		if resp.StatusCode == http.StatusOK {
			break
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatal("a closed stream's place was never freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
