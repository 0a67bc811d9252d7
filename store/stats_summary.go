package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// Summary is the store at a glance: what the console's overview and GET
// /api/v1/summary show. Everything in it is read in one transaction.
type Summary struct {
	// Channels: the channels asked for, in that order, then every other
	// channel that has records or counted traffic since the window's
	// start, by name.
	Channels []ChannelSummary
	// Outbox counts the outbound reports by status; every status is
	// there, zero or not.
	Outbox map[OutboxStatus]int
	// Quarantined counts the quarantine's entries.
	Quarantined int
	// Bytes is the database's size, as a backup would write it.
	Bytes int64
	// OpenCases counts own-network cases that are not resolved or have
	// a webhook call pending (ActiveCaseCount).
	OpenCases int
}

// ChannelSummary is one channel: what it stores, and the sums of its
// hourly counters over the window.
type ChannelSummary struct {
	ChannelStat
	Messages    uint64 `json:"messages"`
	Reports     uint64 `json:"reports"`
	Quarantined uint64 `json:"quarantined"`
	Sent        uint64 `json:"sent"`
}

// Summary reads the summary of the store with the hourly counters summed
// over the hours that start at or after since. It walks the channel
// index and the outbox (each entry's status is read without decoding
// the entry), so its cost grows with the store: about what listing the
// channels costs, plus a pass over the outbox.
func (s *Store) Summary(channels []string, since time.Time) (*Summary, error) {
	sum := &Summary{Outbox: map[OutboxStatus]int{}}
	for _, st := range OutboxStatuses {
		sum.Outbox[st] = 0
	}
	err := s.view(func(tx *bbolt.Tx) error {
		sum.Bytes = tx.Size()
		names := slices.Clone(channels)
		// The channels with records, in index order (by name).
		var extra []string
		c := tx.Bucket(bucketByChannel).Cursor()
		for k, _ := c.First(); k != nil; {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				k, _ = c.Next()
				continue
			}
			name := string(k[:i])
			if !slices.Contains(names, name) {
				extra = append(extra, name)
			}
			k, _ = c.Seek(append([]byte(name), 1))
		}
		// Traffic counted in the window, per channel.
		counted := map[string]counts{}
		err := forStats(tx, firstHour(since), time.Time{}, func(k, v []byte) error {
			n, err := decodeCounts(v)
			if err != nil {
				return fmt.Errorf("hourly counter %s %s: %w", statsKeyHour(k).Format(time.RFC3339), k[8:], err)
			}
			x := counted[string(k[8:])]
			x.add(n)
			counted[string(k[8:])] = x
			return nil
		})
		if err != nil {
			return err
		}
		for name := range counted {
			if !slices.Contains(names, name) && !slices.Contains(extra, name) {
				extra = append(extra, name)
			}
		}
		slices.Sort(extra)
		names = append(names, extra...)
		for _, name := range names {
			cs := ChannelSummary{ChannelStat: channelStatTx(tx, name)}
			n := counted[name]
			cs.Messages, cs.Reports, cs.Quarantined, cs.Sent = n.messages, n.reports, n.quarantined, n.sent
			sum.Channels = append(sum.Channels, cs)
		}
		err = tx.Bucket(bucketOutbox).ForEach(func(_, v []byte) error {
			if st := outboxStatus(v); st != "" {
				sum.Outbox[st]++
			}
			return nil
		})
		if err != nil {
			return err
		}
		sum.Quarantined = tx.Bucket(bucketQuarantine).Stats().KeyN
		if a := tx.Bucket(bucketCasesActive); a != nil {
			sum.OpenCases = a.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sum, nil
}

// channelStatTx counts the records of channel name inside tx (a walk of
// its index keys): ChannelStats and Summary.
func channelStatTx(tx *bbolt.Tx, name string) ChannelStat {
	st := ChannelStat{Name: name}
	prefix := channelPrefix(name)
	c := tx.Bucket(bucketByChannel).Cursor()
	var last []byte
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+16 {
			continue
		}
		if st.Records == 0 {
			st.Oldest = keyTime(k[len(prefix):])
		}
		st.Records++
		last = k
	}
	if last != nil {
		st.Newest = keyTime(last[len(prefix):])
	}
	return st
}

// statusKey starts the status in an outbox entry as json.Marshal writes
// it: after id and channel, whose values cannot hold it.
var statusKey = []byte(`"status":"`)

// outboxStatus reads the status of an encoded outbox entry, without
// decoding the entry when it can.
func outboxStatus(v []byte) OutboxStatus {
	if i := bytes.Index(v, statusKey); i >= 0 {
		rest := v[i+len(statusKey):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			for _, st := range OutboxStatuses {
				if string(rest[:j]) == string(st) {
					return st
				}
			}
		}
	}
	var e struct {
		Status OutboxStatus `json:"status"`
	}
	json.Unmarshal(v, &e)
	return e.Status
}
