package api

import (
	"net/http"
	"time"

	"github.com/xarfd/xarfd/config"
)

// channelInfo is one channel: configured, or orphaned (data in the store,
// no longer in the configuration).
type channelInfo struct {
	Name       string       `json:"name"`
	Configured bool         `json:"configured"`
	Orphaned   bool         `json:"orphaned,omitempty"`
	Kind       config.Kind  `json:"kind,omitempty"`
	Uses       []config.Use `json:"uses,omitempty"`
	// RedactsRecipients is redact.recipients: false means the channel's
	// reports carry recipient addresses to whoever receives them.
	RedactsRecipients bool `json:"redacts_recipients"`
	// Retention is how long its data is kept; RetentionFrom names the key
	// it comes from (channels[].retention or retention_orphaned).
	Retention     string    `json:"retention"`
	RetentionFrom string    `json:"retention_from"`
	Records       int       `json:"records"`
	Oldest        time.Time `json:"oldest,omitzero"`
	Newest        time.Time `json:"newest,omitzero"`
}

// GET /api/v1/channels: the configured channels, then the orphaned ones,
// each with what the store holds of it. An orphaned channel is one that
// was removed or renamed: its data is deleted after retention_orphaned.
func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r, nil); err != nil {
		replyBadParam(w, err)
		return
	}
	cfg := s.view.Load().cfg // one configuration for the whole answer
	var names []string
	for i := range cfg.Channels {
		names = append(names, cfg.Channels[i].Name)
	}
	orphaned, err := s.st.Orphaned(names)
	if err != nil {
		internalError(w, r, "listing stored channels", err)
		return
	}
	stats, err := s.st.ChannelStats(append(append([]string(nil), names...), orphaned...))
	if err != nil {
		internalError(w, r, "counting stored channels", err)
		return
	}
	out := make([]channelInfo, 0, len(stats))
	for i, st := range stats {
		ci := channelInfo{Name: st.Name, Records: st.Records, Oldest: st.Oldest, Newest: st.Newest}
		if i < len(names) {
			ch := &cfg.Channels[i]
			ci.Configured, ci.Kind, ci.Uses, ci.RedactsRecipients = true, ch.Kind, ch.Uses, ch.Redact.Recipients
			ci.Retention, ci.RetentionFrom = ch.Retention.D().String(), "channels[].retention"
		} else {
			ci.Orphaned = true
			ci.Retention, ci.RetentionFrom = cfg.RetentionOrphaned.D().String(), "retention_orphaned"
		}
		out = append(out, ci)
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": out})
}
