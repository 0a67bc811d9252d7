package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// The intel buckets, created on first use (they are additive: a store
// without them reads as "nothing mined yet", and an older binary ignores
// them):
//
//	intel_indicators  kind || 0x00 || value -> JSON IntelIndicator
//	intel_done        report id -> empty: reports already mined, kept for
//	                  IntelLookback behind the cursor
//	intel_meta        "cursor" -> the newest mined report id
//
// The intel worker mines reports after their commit, never inside it, so
// the SMTP path pays nothing for it; the cursor and the done set make it
// resume after a crash without missing or double-counting a report.
var (
	bucketIntel     = []byte("intel_indicators")
	bucketIntelDone = []byte("intel_done")
	bucketIntelMeta = []byte("intel_meta")
	keyIntelCursor  = []byte("cursor")
)

// IntelLookback is how far behind its cursor the worker looks again for
// reports: ids are taken before the commit, so a report can be committed
// after one with a newer id (a slow session beside a fast one).
const IntelLookback = 10 * time.Minute

// IntelMaxHits bounds the hits one indicator keeps (the newest); Total
// still counts all of them.
const IntelMaxHits = 200

// IntelHit is one report that named an indicator.
type IntelHit struct {
	Report  ID        `json:"report"`
	Channel string    `json:"channel"`
	Time    time.Time `json:"time"`
	// Source is the report's XARF evidence_source (spamtrap,
	// user_complaint, …).
	Source string `json:"evidence_source"`
	// Where in the report it was found (origin, from, url, …).
	Where string `json:"where"`
}

// IntelDelist is a manual delisting; hits before At no longer count.
type IntelDelist struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	By     string    `json:"by,omitempty"`
}

// IntelIndicator is the stored state of one indicator.
type IntelIndicator struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// Hits are the newest IntelMaxHits, oldest first.
	Hits     []IntelHit   `json:"hits"`
	Total    int          `json:"total_hits"`
	Delisted *IntelDelist `json:"delisted,omitempty"`
}

// IntelUpdate is what mining one report found.
type IntelUpdate struct {
	Report ID
	Found  []IntelFound
}

// IntelFound is one indicator of a report, with its hit.
type IntelFound struct {
	Kind, Value string
	Hit         IntelHit
}

func intelKey(kind, value string) []byte {
	return append(append([]byte(kind), 0), value...)
}

// IntelPending returns up to limit ids of reports of channels that are
// not mined yet, oldest first: after the cursor, or with lookback from
// IntelLookback before it on (a walk over every id of that time, so the
// worker does it now and then, not on every report).
func (s *Store) IntelPending(channels []string, limit int, lookback bool) ([]ID, error) {
	var out []ID
	err := s.db.View(func(tx *bbolt.Tx) error {
		from := ID{}
		if m := tx.Bucket(bucketIntelMeta); m != nil {
			if v := m.Get(keyIntelCursor); len(v) == len(from) {
				from = ID(v)
				if lookback {
					from = timeKey(IDTime(from).Add(-IntelLookback))
				}
			}
		}
		done := tx.Bucket(bucketIntelDone)
		for _, ch := range channels {
			prefix := channelPrefix(ch)
			c := tx.Bucket(bucketByChannel).Cursor()
			n := 0
			for k, _ := c.Seek(append(prefix, from[:]...)); k != nil && bytes.HasPrefix(k, prefix) && n < limit; k, _ = c.Next() {
				id := k[len(prefix):]
				if done != nil && done.Get(id) != nil {
					continue
				}
				var x ID
				copy(x[:], id)
				out = append(out, x)
				n++
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

// IntelRecord adds the hits of mined reports in one transaction, marks
// the reports done and moves the cursor; it returns the indicators it
// changed, as stored. A report with nothing found is marked done too.
func (s *Store) IntelRecord(updates []IntelUpdate) ([]IntelIndicator, error) {
	var changed []IntelIndicator
	err := s.Commit(func(tx *bbolt.Tx) error {
		changed = changed[:0]
		ib, err := tx.CreateBucketIfNotExists(bucketIntel)
		if err != nil {
			return err
		}
		db, err := tx.CreateBucketIfNotExists(bucketIntelDone)
		if err != nil {
			return err
		}
		mb, err := tx.CreateBucketIfNotExists(bucketIntelMeta)
		if err != nil {
			return err
		}
		db.FillPercent = appendFill
		touched := map[string]*IntelIndicator{}
		var order []string
		late := tx.Bucket(bucketIntelLate)
		cursor := mb.Get(keyIntelCursor)
		for _, u := range updates {
			// A late report (IntelLate) leaves its queue whether it is
			// mined now or was by an earlier pass, and never moves the
			// cursor: that would skip the reports between.
			wasLate := false
			if late != nil && late.Get(u.Report[:]) != nil {
				wasLate = true
				if err := late.Delete(u.Report[:]); err != nil {
					return err
				}
			}
			if db.Get(u.Report[:]) != nil {
				continue // mined by an earlier pass
			}
			for _, f := range u.Found {
				k := string(intelKey(f.Kind, f.Value))
				ind := touched[k]
				if ind == nil {
					ind = &IntelIndicator{Kind: f.Kind, Value: f.Value}
					if v := ib.Get([]byte(k)); v != nil {
						if err := json.Unmarshal(v, ind); err != nil {
							return fmt.Errorf("decoding indicator %s %q: %w", f.Kind, f.Value, err)
						}
					}
					touched[k] = ind
					order = append(order, k)
				}
				ind.Hits = append(ind.Hits, f.Hit)
				ind.Total++
			}
			if err := db.Put(u.Report[:], nil); err != nil {
				return err
			}
			if !wasLate && bytes.Compare(u.Report[:], cursor) > 0 {
				cursor = append([]byte(nil), u.Report[:]...)
			}
		}
		for _, k := range order {
			ind := touched[k]
			slices.SortStableFunc(ind.Hits, func(a, b IntelHit) int { return a.Time.Compare(b.Time) })
			if n := len(ind.Hits); n > IntelMaxHits {
				ind.Hits = slices.Clone(ind.Hits[n-IntelMaxHits:])
			}
			v, err := json.Marshal(ind)
			if err != nil {
				return err
			}
			if err := ib.Put([]byte(k), v); err != nil {
				return err
			}
			changed = append(changed, *ind)
		}
		if cursor != nil {
			return mb.Put(keyIntelCursor, cursor)
		}
		return nil
	})
	return changed, err
}

// IntelGet returns one indicator; ErrNotFound when it has no hits.
func (s *Store) IntelGet(kind, value string) (*IntelIndicator, error) {
	var ind *IntelIndicator
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketIntel)
		if b == nil {
			return ErrNotFound
		}
		v := b.Get(intelKey(kind, value))
		if v == nil {
			return ErrNotFound
		}
		ind = new(IntelIndicator)
		return json.Unmarshal(v, ind)
	})
	return ind, err
}

// IntelForEach calls fn for the indicators of kind ("" = all kinds) in
// key order, starting after the value after, until fn returns an error;
// ErrStop ends the walk without error.
func (s *Store) IntelForEach(kind, after string, fn func(*IntelIndicator) error) error {
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketIntel)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		prefix := []byte(nil)
		if kind != "" {
			prefix = append([]byte(kind), 0)
		}
		switch {
		case after != "" && kind != "":
			k, v = c.Seek(intelKey(kind, after))
			if bytes.Equal(k, intelKey(kind, after)) {
				k, v = c.Next()
			}
		case prefix != nil:
			k, v = c.Seek(prefix)
		default:
			k, v = c.First()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var ind IntelIndicator
			if err := json.Unmarshal(v, &ind); err != nil {
				return fmt.Errorf("decoding indicator %q: %w", k, err)
			}
			if err := fn(&ind); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// ErrStop, returned by the callback of a walk (IntelForEach,
// ForEachCase), ends it early without error.
var ErrStop = errors.New("store: stop")

// IntelDelist records a manual delisting of an indicator with its reason.
func (s *Store) IntelDelist(kind, value string, d IntelDelist) (*IntelIndicator, error) {
	var out *IntelIndicator
	err := s.Commit(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketIntel)
		if b == nil {
			return ErrNotFound
		}
		k := intelKey(kind, value)
		v := b.Get(k)
		if v == nil {
			return ErrNotFound
		}
		ind := new(IntelIndicator)
		if err := json.Unmarshal(v, ind); err != nil {
			return err
		}
		ind.Delisted = &d
		nv, err := json.Marshal(ind)
		if err != nil {
			return err
		}
		out = ind
		return b.Put(k, nv)
	})
	return out, err
}

// IntelPrune drops hits whose report is older than its channel's
// retention (keep returns the oldest time kept for a channel), the
// indicators left without hits, and done marks older than IntelLookback
// behind the cursor. It returns how many indicators it deleted.
func (s *Store) IntelPrune(keep func(channel string) time.Time) (int, error) {
	deleted := 0
	err := s.Commit(func(tx *bbolt.Tx) error {
		deleted = 0
		b := tx.Bucket(bucketIntel)
		if b == nil {
			return nil
		}
		type change struct {
			k []byte
			v []byte // nil: delete
		}
		var changes []change
		err := b.ForEach(func(k, v []byte) error {
			var ind IntelIndicator
			if err := json.Unmarshal(v, &ind); err != nil {
				return fmt.Errorf("decoding indicator %q: %w", k, err)
			}
			kept := ind.Hits[:0]
			for _, h := range ind.Hits {
				if !h.Time.Before(keep(h.Channel)) {
					kept = append(kept, h)
				}
			}
			if len(kept) == len(ind.Hits) {
				return nil
			}
			ck := append([]byte(nil), k...)
			if len(kept) == 0 {
				changes = append(changes, change{k: ck})
				return nil
			}
			ind.Hits = kept
			nv, err := json.Marshal(&ind)
			if err != nil {
				return err
			}
			changes = append(changes, change{k: ck, v: nv})
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range changes {
			if c.v == nil {
				deleted++
				err = b.Delete(c.k)
			} else {
				err = b.Put(c.k, c.v)
			}
			if err != nil {
				return err
			}
		}
		m, d := tx.Bucket(bucketIntelMeta), tx.Bucket(bucketIntelDone)
		if m == nil || d == nil {
			return nil
		}
		cur := m.Get(keyIntelCursor)
		if len(cur) != 16 {
			return nil
		}
		limit := timeKey(IDTime(ID(cur)).Add(-2 * IntelLookback))
		var old [][]byte
		c := d.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, limit[:]) < 0; k, _ = c.Next() {
			old = append(old, append([]byte(nil), k...))
		}
		for _, k := range old {
			if err := d.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return deleted, err
}
