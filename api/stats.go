package api

import (
	"net/http"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/intel"
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

type summaryChannel struct {
	store.ChannelSummary
	Configured bool        `json:"configured"`
	Kind       config.Kind `json:"kind,omitempty"`
}

type summaryReply struct {
	At    time.Time `json:"at"`
	Since time.Time `json:"since"`
	// Channels: configured ones in configuration order, then the others
	// with data or traffic in the window; sums over [since, at).
	Channels []summaryChannel `json:"channels"`
	Reporter struct {
		Enabled bool `json:"enabled"`
		// State is "sending" or "dry-run" (reporter.enabled false).
		State string `json:"state"`
	} `json:"reporter"`
	Outbox map[store.OutboxStatus]int `json:"outbox"`
	Store  struct {
		Bytes       int64 `json:"bytes"`
		Quarantined int   `json:"quarantined"`
	} `json:"store"`
	// Indicators counts what is listed now per kind; absent when no
	// channel uses intel.
	Indicators map[intel.Kind]int `json:"indicators,omitempty"`
	Cases      struct {
		Open int `json:"open"`
	} `json:"cases"`
}

// GET /api/v1/summary[?since=]: the overview (store.Summary), with the
// hourly counters summed since since (a day ago by default).
func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, []string{"since"})
	if err != nil {
		replyBadParam(w, err)
		return
	}
	now := time.Now().UTC()
	since, err := parseTime(q, "since")
	if err != nil {
		replyBadParam(w, err)
		return
	}
	if since.IsZero() {
		since = now.Add(-defaultStatsRange)
	}
	if !now.After(since) {
		replyBadParam(w, &badParam{"since", "must be in the past"})
		return
	}
	cfg := s.view.Load().cfg
	names := make([]string, len(cfg.Channels))
	for i := range cfg.Channels {
		names[i] = cfg.Channels[i].Name
	}
	sum, err := s.st.Summary(names, since)
	if err != nil {
		internalError(w, r, "reading the summary", err)
		return
	}
	out := summaryReply{At: now, Since: since.UTC(), Outbox: sum.Outbox}
	for _, c := range sum.Channels {
		sc := summaryChannel{ChannelSummary: c}
		if ch := cfg.Channel(c.Name); ch != nil {
			sc.Configured, sc.Kind = true, ch.Kind
		}
		out.Channels = append(out.Channels, sc)
	}
	out.Reporter.Enabled, out.Reporter.State = cfg.Reporter.Enabled, "dry-run"
	if cfg.Reporter.Enabled {
		out.Reporter.State = "sending"
	}
	out.Store.Bytes, out.Store.Quarantined = sum.Bytes, sum.Quarantined
	out.Cases.Open = sum.OpenCases
	if s.intel != nil {
		out.Indicators = map[intel.Kind]int{}
		for _, k := range intel.Kinds {
			out.Indicators[k] = len(s.intel.Listed(k))
		}
	}
	writeJSON(w, http.StatusOK, out)
}
