package api

import (
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// TestChannelsListsOrphaned: a channel with data in the store that the
// configuration no longer names is listed as orphaned, with its count
// and the retention that now applies to it.
func TestChannelsListsOrphaned(t *testing.T) {
	e := newEnv(t, true, nil)
	now := time.Now()
	var entries []store.Entry
	for i, ch := range []string{"fbl", "fbl", "renamed-fbl"} {
		id := idAt(now.Add(time.Duration(i-3) * time.Hour))
		entries = append(entries, store.Entry{Report: report(id, ch, "198.51.100.1")})
	}
	if err := e.st.Put(entries); err != nil {
		t.Fatal(err)
	}
	if r := e.get("/api/v1/channels", ""); r.code != 401 {
		t.Errorf("without token: %d", r.code)
	}
	r := e.get("/api/v1/channels", tokRead)
	var body struct {
		Channels []channelInfo `json:"channels"`
	}
	r.json(t, &body)
	if r.code != 200 || len(body.Channels) != 4 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	got := map[string]channelInfo{}
	for _, c := range body.Channels {
		got[c.Name] = c
	}
	if c := got["fbl"]; !c.Configured || c.Orphaned || c.Records != 2 || c.Kind != "arf" || c.Retention != "720h0m0s" || c.RedactsRecipients {
		t.Errorf("fbl: %+v", c)
	}
	if c := got["trap"]; !c.Configured || c.Records != 0 || !c.RedactsRecipients {
		t.Errorf("trap: %+v", c)
	}
	c := got["renamed-fbl"]
	if c.Configured || !c.Orphaned || c.Records != 1 || c.RetentionFrom != "retention_orphaned" || c.Retention != "720h0m0s" || c.Oldest.IsZero() {
		t.Errorf("orphaned: %+v", c)
	}
	if body.Channels[3].Name != "renamed-fbl" {
		t.Errorf("orphaned channels come after the configured ones: %s", r.body)
	}
	// Its reports can still be queried; a name with no data is unknown.
	var page listing
	r = e.get("/api/v1/reports?channel=renamed-fbl", tokRead)
	r.json(t, &page)
	if r.code != 200 || len(page.Reports) != 1 {
		t.Errorf("reports of the orphaned channel: %d %s", r.code, r.body)
	}
	if r := e.get("/api/v1/reports?channel=never-was", tokRead); r.code != 404 {
		t.Errorf("unknown channel: %d %s", r.code, r.body)
	}
}

// TestOutboxListsWithdrawn: a complaint withdrawn by a retraction is
// listed under status=withdrawn.
func TestOutboxListsWithdrawn(t *testing.T) {
	e := newEnv(t, false, nil)
	id := idAt(time.Now())
	if err := e.st.Put([]store.Entry{{Report: report(id, "fbl", "198.51.100.1"),
		Outbox: &store.OutboxEntry{ID: id, Channel: "fbl", Status: store.OutboxWithdrawn, Created: time.Now().UTC()}}}); err != nil {
		t.Fatal(err)
	}
	var page struct {
		Entries []store.OutboxEntry `json:"entries"`
	}
	r := e.get("/api/v1/outbox?status=withdrawn", "")
	r.json(t, &page)
	if r.code != 200 || len(page.Entries) != 1 || page.Entries[0].ID != id {
		t.Errorf("%d %s", r.code, r.body)
	}
}
