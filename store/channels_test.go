package store

import (
	"slices"
	"testing"
	"time"
)

// msgAt is msg with an id from time at (ids are UUIDv7: retention and
// the channel statistics read the time from them).
func msgAt(t *testing.T, channel string, at time.Time) *Message {
	t.Helper()
	m := msg(t, channel)
	k := timeKey(at)
	copy(m.ID[:6], k[:6])
	return m
}

func TestOrphanedChannelsAreListedCountedAndSwept(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now()
	put := func(channel string, age time.Duration) ID {
		m := msgAt(t, channel, now.Add(-age))
		if err := s.Put([]Entry{{Message: m, Raw: []byte("x")}}); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	put("fbl", 48*time.Hour)
	put("fbl-old", 48*time.Hour)
	recent := put("fbl-old", time.Hour)
	put("trap", time.Minute)
	put("trap-2", time.Minute) // a name that extends another's

	names, err := s.ChannelNames()
	if err != nil || !slices.Equal(names, []string{"fbl", "fbl-old", "trap", "trap-2"}) {
		t.Fatalf("names = %v, %v", names, err)
	}
	orph, err := s.Orphaned([]string{"fbl", "trap", "trap-2"})
	if err != nil || !slices.Equal(orph, []string{"fbl-old"}) {
		t.Fatalf("orphaned = %v, %v", orph, err)
	}
	stats, err := s.ChannelStats([]string{"fbl-old", "none"})
	if err != nil || len(stats) != 2 || stats[0].Records != 2 || stats[1].Records != 0 {
		t.Fatalf("stats = %+v, %v", stats, err)
	}
	if d := now.Add(-48 * time.Hour).Sub(stats[0].Oldest); d < -time.Second || d > time.Second {
		t.Errorf("oldest = %v", stats[0].Oldest)
	}

	// Orphaned data older than the orphan retention goes; a configured
	// channel keeps its own retention (1000h here), whatever the default.
	var swept []string
	s.sweepOrphaned(Retention{"fbl": 1000 * time.Hour, "trap": time.Hour, "trap-2": time.Hour}, 24*time.Hour, func(ch string, n int, err error) {
		if err != nil {
			t.Error(err)
		}
		swept = append(swept, ch)
	})
	if !slices.Equal(swept, []string{"fbl-old"}) {
		t.Errorf("swept %v", swept)
	}
	stats, _ = s.ChannelStats([]string{"fbl", "fbl-old"})
	if stats[0].Records != 1 || stats[1].Records != 1 {
		t.Errorf("after the sweep: %+v", stats)
	}
	if _, err := s.Message(recent); err != nil {
		t.Errorf("recent orphaned record deleted: %v", err)
	}
}
