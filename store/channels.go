package store

import (
	"bytes"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// ChannelStat is what the store holds of one channel.
type ChannelStat struct {
	Name string `json:"name"`
	// Records counts the channel's messages and reports (one per id).
	Records int `json:"records"`
	// Oldest and Newest are the arrival times of its first and last
	// record (ids are UUIDv7).
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
}

// ChannelNames lists every channel that has data in the store, sorted.
// It jumps from one channel's keys to the next, so it costs a seek per
// channel, not a walk of the index.
func (s *Store) ChannelNames() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketByChannel).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				k, _ = c.Next() // not a channel key; skip it
				continue
			}
			name := string(k[:i])
			out = append(out, name)
			k, _ = c.Seek(append([]byte(name), 1)) // past every name||0x00||id
		}
		return nil
	})
	return out, err
}

// ChannelStats counts the records of each named channel in one read
// transaction (a walk of each channel's index keys).
func (s *Store) ChannelStats(names []string) ([]ChannelStat, error) {
	out := make([]ChannelStat, 0, len(names))
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, name := range names {
			out = append(out, channelStatTx(tx, name))
		}
		return nil
	})
	return out, err
}

func keyTime(id []byte) time.Time {
	var x ID
	copy(x[:], id)
	return IDTime(x).UTC()
}

// Orphaned returns the channels that have data in the store but are not
// among configured: a channel removed from (or renamed in) the
// configuration, whose data its own retention no longer reaches.
func (s *Store) Orphaned(configured []string) ([]string, error) {
	names, err := s.ChannelNames()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(names, func(n string) bool { return slices.Contains(configured, n) }), nil
}

// HasChannel reports whether channel has any data in the store (one
// seek), so that an orphaned channel's data can still be queried.
func (s *Store) HasChannel(channel string) (bool, error) {
	found := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		prefix := channelPrefix(channel)
		k, _ := tx.Bucket(bucketByChannel).Cursor().Seek(prefix)
		found = k != nil && bytes.HasPrefix(k, prefix)
		return nil
	})
	return found, err
}
