package console

import "net/http"

// GET /overview/stats.json?range=24h|30d
func (c *Console) overviewStats(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not yet", http.StatusNotImplemented)
}
