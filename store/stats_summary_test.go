package store

import (
	"testing"
	"time"
)

func TestSummary(t *testing.T) {
	s := open(t, t.TempDir())
	id := seedStats(t, s) // fbl and trap on day 03-01; one fbl entry pending
	if _, err := s.Claim(id, at(13, 0), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSent(id, at(13, 20), "", false); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		queued(t, s, time.Now()) // channel x, now
	}
	// One failed entry: claim one of x's and give it up.
	x, _, _ := s.Outbox(OutboxPending, ID{}, 1)
	if _, err := s.Claim(x[0].ID, time.Now().Add(time.Second), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GiveUp(x[0].ID, time.Now(), "550 no", "refused", nil); err != nil {
		t.Fatal(err)
	}

	sum, err := s.Summary([]string{"trap", "idle"}, day)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range sum.Channels {
		names = append(names, c.Name)
	}
	// Asked for first, in that order (idle has nothing), then the rest by name.
	if want := []string{"trap", "idle", "fbl", "x"}; len(names) != 4 || names[0] != want[0] || names[1] != want[1] || names[2] != want[2] || names[3] != want[3] {
		t.Fatalf("channels %v, want %v", names, want)
	}
	byName := map[string]ChannelSummary{}
	for _, c := range sum.Channels {
		byName[c.Name] = c
	}
	if c := byName["fbl"]; c.Records != 3 || c.Messages != 3 || c.Reports != 2 || c.Quarantined != 1 || c.Sent != 1 ||
		!c.Oldest.Equal(at(10, 5).Truncate(time.Millisecond)) {
		t.Errorf("fbl: %+v", c)
	}
	if c := byName["trap"]; c.Records != 2 || c.Messages != 1 || c.Reports != 1 {
		t.Errorf("trap: %+v", c)
	}
	if c := byName["idle"]; c.Records != 0 || c.Messages != 0 {
		t.Errorf("idle: %+v", c)
	}
	if c := byName["x"]; c.Records != 3 || c.Messages != 3 || c.Reports != 3 {
		t.Errorf("x: %+v", c)
	}
	if sum.Outbox[OutboxPending] != 2 || sum.Outbox[OutboxFailed] != 1 || sum.Outbox[OutboxSent] != 1 ||
		len(sum.Outbox) != len(OutboxStatuses) || sum.Outbox[OutboxDryRun] != 0 {
		t.Errorf("outbox %v", sum.Outbox)
	}
	if sum.Quarantined != 1 || sum.Bytes <= 0 || sum.OpenCases != 0 {
		t.Errorf("summary %+v", sum)
	}

	// The window: counters of hours before it are not summed.
	sum, _ = s.Summary(nil, at(11, 0))
	for _, c := range sum.Channels {
		if c.Name == "fbl" && (c.Messages != 1 || c.Quarantined != 1 || c.Sent != 1 || c.Records != 3) {
			t.Errorf("fbl since 11:00: %+v", c)
		}
	}
}
