package console

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/xarfd/xarfd/internal/sse"
	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store"
)

// heartbeat keeps idle live streams (and the proxies between) open.
const heartbeat = 15 * time.Second

// writeWait bounds one write of a live stream.
const writeWait = 30 * time.Second

// closer ends the live streams when the daemon stops, so that the HTTP
// server's shutdown does not wait for them.
type closer struct {
	once sync.Once
	ch   chan struct{}
}

// Close ends every live stream; the daemon calls it before it shuts the
// HTTP server down. On a nil Console it does nothing.
func (c *Console) Close() {
	if c == nil {
		return
	}
	c.closing.once.Do(func() { close(c.closing.ch) })
}

// GET /reports/live?channel=&source_ip=&evidence=&text=: Server-Sent
// Events for the reports page (htmx's SSE extension). Each new report
// that matches the filters is one event "report" whose data is the
// rendered table row.
func (c *Console) reportsLive(w http.ResponseWriter, r *http.Request) {
	if c.o.Hub == nil {
		http.Error(w, "no live stream", http.StatusNotFound)
		return
	}
	f := parseReportFilter(r.URL.Query(), c.o.Now())
	f.q.Since, f.q.Until, f.q.Before = time.Time{}, time.Time{}, store.ID{}
	if len(f.Errors) > 0 {
		http.Error(w, "bad filter", http.StatusBadRequest)
		return
	}
	if n := c.live.Add(1); n > int64(c.o.maxLive) {
		c.live.Add(-1)
		c.o.Metrics.StreamRefused(metrics.StreamConsole)
		c.o.Logger.Warn().Int("limit", c.o.maxLive).Msg("console: live stream refused: too many open")
		w.Header().Set("Retry-After", "30")
		http.Error(w, "too many live streams, try again later", http.StatusServiceUnavailable)
		return
	}
	defer c.live.Add(-1)
	sub := c.o.Hub.Subscribe(f.Channel, liveBuffer)
	defer c.o.Hub.Unsubscribe(sub)
	st, err := sse.Open(w, writeWait)
	if err != nil {
		c.o.Logger.Error().Err(err).Msg("console: live stream")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if !st.Hello() {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	var row, ev bytes.Buffer
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.closing.ch:
			return
		case <-sub.Dropped():
			return // the browser reconnects
		case <-tick.C:
			if !st.Heartbeat() {
				return
			}
		case rep := <-sub.C():
			if rep.ID == (store.ID{}) {
				continue // an indicator event of the API's stream
			}
			ok, err := c.liveMatch(f, rep)
			if err != nil {
				c.o.Logger.Error().Err(err).Msg("console: live stream: filtering")
				continue
			}
			if !ok {
				continue
			}
			doc, _ := parseDoc(rep.XARF)
			rr := rowOf(rep, doc)
			rr.Fresh = true
			if e, err := c.o.Store.GetOutbox(rep.ID); err == nil {
				rr.Outbox = string(e.Status)
			} else {
				rr.Outbox = "none"
			}
			row.Reset()
			if err := c.pages.rows.ExecuteTemplate(&row, "report-row", rr); err != nil {
				c.o.Logger.Error().Err(err).Msg("console: rendering a live row")
				continue
			}
			ev.Reset()
			ev.WriteString("event: report\nid: " + rep.ID.String() + "\n")
			for _, line := range strings.Split(strings.TrimRight(row.String(), "\n"), "\n") {
				ev.WriteString("data: ")
				ev.WriteString(strings.TrimRight(line, "\r"))
				ev.WriteByte('\n')
			}
			ev.WriteByte('\n')
			if !st.Send(ev.Bytes()) {
				return
			}
		}
	}
}
