package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// generous bounds a wait for something that should happen at once; it
// is a hang detector, not a speed assertion.
const generous = 20 * time.Second

type sseEvent struct {
	event, id, data string
	comment         string
}

// sseClient reads events from a stream response.
type sseClient struct {
	resp   *http.Response
	events chan sseEvent
}

func openStream(t *testing.T, e *env, query, token string) *sseClient {
	t.Helper()
	return openStreamAt(t, e.ts.URL, query, token)
}

func openStreamAt(t *testing.T, base, query, token string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 100)}
	subscribed := make(chan struct{})
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.comment = strings.TrimSpace(line[1:])
				if ev.comment == "subscribed" {
					close(subscribed)
				}
			case strings.HasPrefix(line, "event: "):
				ev.event = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				if ev.data != "" {
					ev.data += "\n"
				}
				ev.data += line[len("data: "):]
			}
		}
	}()
	select {
	case <-subscribed:
	case <-time.After(generous):
		t.Fatal("no subscribed comment")
	}
	return c
}

// next returns the next report event, skipping comments.
func (c *sseClient) next(t *testing.T) sseEvent {
	t.Helper()
	timeout := time.After(generous)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.event != "" {
				return ev
			}
		case <-timeout:
			t.Fatal("no event")
		}
	}
}

func TestStreamDeliversReports(t *testing.T) {
	e := newEnv(t, true, nil)
	all := openStream(t, e, "", tokRead)
	fbl := openStream(t, e, "?channel=fbl", tokAdmin)

	// A report arriving through ingest (a submitted document) reaches the
	// stream through OnReport.
	r := e.do("POST", "/api/v1/channels/plain/reports", tokSubmitAll, "application/json", []byte(xarfDoc))
	if r.code != 202 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var res struct{ ID string }
	r.json(t, &res)
	ev := all.next(t)
	if ev.event != "report" || ev.id != res.ID || strings.Contains(ev.data, "\n") {
		t.Fatalf("event: %+v", ev)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(ev.data), &doc); err != nil || doc["report_id"] != res.ID {
		t.Fatalf("data: %v %s", err, ev.data)
	}

	// A pretty-printed stored document is sent on one data line.
	id := idAt(time.Now())
	rep := &store.Report{ID: id, Channel: "fbl", XARF: json.RawMessage("{\n  \"report_id\": \"" + id.String() + "\"\n}")}
	e.hub.Publish(rep)
	if ev := fbl.next(t); ev.id != id.String() || ev.data != `{"report_id":"`+id.String()+`"}` {
		t.Fatalf("fbl stream (must skip the plain report): %+v", ev)
	}
	if ev := all.next(t); ev.id != id.String() {
		t.Fatalf("all stream: %+v", ev)
	}

	if r := e.get("/api/v1/stream", ""); r.code != 401 {
		t.Errorf("stream without token: %d", r.code)
	}
	if r := e.get("/api/v1/stream", tokSubmit); r.code != 403 {
		t.Errorf("stream with a submit token: %d", r.code)
	}
	if r := e.get("/api/v1/stream?channel=nope", tokRead); r.code != 404 {
		t.Errorf("stream of an unknown channel: %d", r.code)
	}
}

func TestStreamHeartbeat(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.Heartbeat = 20 * time.Millisecond })
	c := openStream(t, e, "", "")
	timeout := time.After(generous)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.comment == "heartbeat" {
				return
			}
		case <-timeout:
			t.Fatal("no heartbeat")
		}
	}
}

// publishAll publishes n reports in a goroutine and fails unless Publish
// returns for all of them: it must never wait for a consumer.
func publishAll(t *testing.T, h *Hub, channel string, n, size int) {
	t.Helper()
	pad := strings.Repeat("x", size)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			id := idAt(time.Now())
			h.Publish(&store.Report{ID: id, Channel: channel, XARF: json.RawMessage(fmt.Sprintf(`{"report_id":%q,"pad":%q}`, id, pad))})
		}
	}()
	select {
	case <-done:
	case <-time.After(generous):
		t.Fatal("Publish blocked on a consumer that does not read")
	}
}

func TestHubDropsSlowSubscriber(t *testing.T) {
	e := newEnv(t, false, nil)
	slow := e.hub.Subscribe("", 4)
	other := e.hub.Subscribe("plain", 4) // another channel: never filled
	publishAll(t, e.hub, "fbl", 1000, 10)
	select {
	case <-slow.Dropped():
	default:
		t.Fatal("a full subscriber was not dropped")
	}
	select {
	case <-other.Dropped():
		t.Fatal("a subscriber of another channel was dropped")
	default:
	}
	if n := dropped(t, e); n != 1 {
		t.Errorf("xarfd_stream_dropped_total = %v, want 1", n)
	}
	if e.hub.Len() != 1 {
		t.Errorf("hub still holds %d subscribers, want 1", e.hub.Len())
	}
}

// TestStreamSlowClientDropped: an HTTP consumer that never reads its
// socket stalls its handler in Write; publishing goes on regardless and
// the consumer is dropped.
func TestStreamSlowClientDropped(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.StreamBuffer = 8 })
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
	// Wait for the subscription, reading only the response header.
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, ": subscribed") {
			break
		}
	}
	// From here on the client reads nothing. Large reports fill the
	// socket buffers, the handler blocks in Write and stops draining its
	// subscription, which then overflows. Every Publish must return
	// meanwhile.
	doc := json.RawMessage(`{"pad":"` + strings.Repeat("x", 256<<10) + `"}`)
	done := make(chan int)
	go func() {
		i := 0
		for ; i < 10000 && e.hub.Len() > 0; i++ {
			e.hub.Publish(&store.Report{ID: idAt(time.Now()), Channel: "fbl", XARF: doc})
		}
		done <- i
	}()
	select {
	case n := <-done:
		if e.hub.Len() != 0 {
			t.Fatalf("the stalled consumer was not dropped after %d reports", n)
		}
		t.Logf("dropped after %d reports", n)
	case <-time.After(generous):
		t.Fatal("Publish blocked on a stalled consumer")
	}
	if n := dropped(t, e); n < 1 {
		t.Errorf("xarfd_stream_dropped_total = %v", n)
	}
}

func dropped(t *testing.T, e *env) float64 {
	t.Helper()
	r := e.get("/metrics", "")
	for _, line := range strings.Split(string(r.body), "\n") {
		if strings.HasPrefix(line, "xarfd_stream_dropped_total ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, "xarfd_stream_dropped_total "), &v)
			return v
		}
	}
	t.Fatalf("no xarfd_stream_dropped_total in /metrics")
	return 0
}

func TestShutdownEndsStreams(t *testing.T) {
	e := newEnv(t, false, nil)
	c := openStream(t, e, "", "")
	e.srv.Shutdown(context.Background())
	timeout := time.After(generous)
	for {
		select {
		case _, ok := <-c.events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("stream still open after Shutdown")
		}
	}
}

// TestStreamOutlivesServerTimeouts runs the real http.Server (Serve) with
// read and write timeouts far shorter than the stream's life: the stream
// must keep delivering, and other requests stay bounded.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	e := newEnv(t, false, func(o *Options) { o.Heartbeat = 30 * time.Millisecond })
	e.srv.srv.ReadTimeout = 200 * time.Millisecond
	e.srv.srv.WriteTimeout = 200 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(l) }()
	defer func() {
		e.srv.Shutdown(context.Background())
		if err := <-served; err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	}()
	c := openStreamAt(t, "http://"+l.Addr().String(), "", "")
	if !strings.Contains(e.log.String(), `"addr":"`+l.Addr().String()+`","tokens":false,"message":"http listening"`) {
		t.Errorf("no http listening line with the address:\n%s", e.log.String())
	}
	time.Sleep(time.Second) // five write timeouts and read timeouts
	id := idAt(time.Now())
	e.hub.Publish(&store.Report{ID: id, Channel: "fbl", XARF: json.RawMessage(`{"report_id":"` + id.String() + `"}`)})
	if ev := c.next(t); ev.id != id.String() {
		t.Fatalf("event after the server timeouts: %+v", ev)
	}
}
