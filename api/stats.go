package api

import (
	"net/http"
	"time"

	"github.com/xarfd/xarfd/store"
)

// defaultStatsRange is the window of GET /api/v1/stats/hourly without
// since: the last day.
const defaultStatsRange = 24 * time.Hour

type hourlyPage struct {
	Since time.Time        `json:"since"`
	Until time.Time        `json:"until"`
	Hours []store.HourStat `json:"hours"`
}

// GET /api/v1/stats/hourly?since=&until=&channel=: the hourly counters
// (store.HourlyStats) of the hours whose start lies in [since, until),
// sorted by hour, then channel; hours without traffic are absent. until
// defaults to now, since to a day before until; the range is at most
// store.StatsKeep, all that is kept.
func (s *Server) hourlyStats(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"since", "until", "channel"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	since, err := parseTime(q, "since")
	if err != nil {
		replyBadParam(w, err)
		return
	}
	until, err := parseTime(q, "until")
	if err != nil {
		replyBadParam(w, err)
		return
	}
	if until.IsZero() {
		until = time.Now()
	}
	if since.IsZero() {
		since = until.Add(-defaultStatsRange)
	}
	switch {
	case !until.After(since):
		replyBadParam(w, &badParam{"until", "must be after since"})
		return
	case until.Sub(since) > store.StatsKeep+time.Hour:
		replyBadParam(w, &badParam{"since", "the range is at most " + store.StatsKeep.String() + " (400 days), all that is kept"})
		return
	}
	channel := q.Get("channel")
	if !s.knownChannel(w, channel) {
		return
	}
	hs, err := s.st.HourlyStats(since, until)
	if err != nil {
		internalError(w, r, "reading hourly counters", err)
		return
	}
	out := hourlyPage{Since: since.UTC(), Until: until.UTC(), Hours: make([]store.HourStat, 0, len(hs))}
	for _, h := range hs {
		if channel == "" || h.Channel == channel {
			out.Hours = append(out.Hours, h)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
