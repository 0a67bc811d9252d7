package console

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// chartStats is what the overview's charts draw: one point per hour of
// the range (hours without traffic are zeros), per channel that had any.
type chartStats struct {
	Range string `json:"range"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Hours are the hours' starts, Unix seconds (uPlot's x values).
	Hours    []int64        `json:"hours"`
	Channels []chartChannel `json:"channels"`
}

type chartChannel struct {
	Name        string   `json:"name"`
	Messages    []uint64 `json:"messages"`
	Reports     []uint64 `json:"reports"`
	Quarantined []uint64 `json:"quarantined"`
	Sent        []uint64 `json:"sent"`
}

var chartRanges = map[string]time.Duration{"24h": 24 * time.Hour, "30d": 30 * 24 * time.Hour}

// GET /overview/stats.json?range=24h|30d: the store's hourly counters
// (store.HourlyStats) laid out for the charts; the current hour is the
// last point.
func (c *Console) overviewStats(w http.ResponseWriter, r *http.Request) {
	rg := r.URL.Query().Get("range")
	if rg == "" {
		rg = "24h"
	}
	span, ok := chartRanges[rg]
	if !ok {
		http.Error(w, "range: want 24h or 30d", http.StatusBadRequest)
		return
	}
	to := c.o.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	from := to.Add(-span)
	hs, err := c.o.Store.HourlyStats(from, to)
	if err != nil {
		c.o.Logger.Error().Err(err).Msg("console: hourly stats")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	n := int(span / time.Hour)
	st := chartStats{Range: rg, From: from.Format(time.RFC3339), To: to.Format(time.RFC3339), Hours: make([]int64, n), Channels: []chartChannel{}}
	for i := range st.Hours {
		st.Hours[i] = from.Add(time.Duration(i) * time.Hour).Unix()
	}
	byName := map[string]*chartChannel{}
	for _, h := range hs {
		i := int(h.Hour.Sub(from) / time.Hour)
		if i < 0 || i >= n {
			continue
		}
		ch := byName[h.Channel]
		if ch == nil {
			ch = &chartChannel{Name: h.Channel, Messages: make([]uint64, n), Reports: make([]uint64, n),
				Quarantined: make([]uint64, n), Sent: make([]uint64, n)}
			byName[h.Channel] = ch
		}
		ch.Messages[i] += h.Messages
		ch.Reports[i] += h.Reports
		ch.Quarantined[i] += h.Quarantined
		ch.Sent[i] += h.Sent
	}
	for _, ch := range byName {
		st.Channels = append(st.Channels, *ch)
	}
	slices.SortFunc(st.Channels, func(a, b chartChannel) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	b, err := json.Marshal(st)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
