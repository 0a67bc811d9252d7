package intel

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// XARF evidence sources with a threshold of their own.
const (
	SourceSpamtrap      = "spamtrap"
	SourceUserComplaint = "user_complaint"
)

// Policy decides from an indicator's hits whether it is listed.
type Policy struct {
	Window, Expire time.Duration
	// ListAfter: hits of a source that list on their own; a source not
	// named here counts as a user complaint.
	Spamtrap, Complaint float64
}

// PolicyOf returns the policy of cfg's intel block.
func PolicyOf(cfg *config.Config) Policy {
	return Policy{Window: cfg.Intel.Window.D(), Expire: cfg.Intel.ExpireAfter.D(),
		Spamtrap: cfg.Intel.ListAfter.Spamtrap, Complaint: cfg.Intel.ListAfter.UserComplaint}
}

func (p Policy) weight(source string) float64 {
	if source == SourceSpamtrap {
		return 1 / p.Spamtrap
	}
	return 1 / p.Complaint
}

// Status is an indicator's listing state at one time, with the reason.
type Status struct {
	Listed bool `json:"listed"`
	// Since is when the current (or last) listing began; Until when it
	// ends (or ended) unless another hit comes.
	Since time.Time `json:"listed_since,omitzero"`
	Until time.Time `json:"listed_until,omitzero"`
	// Score is the weight of the hits within the window before the last
	// counted hit: 1 or more lists.
	Score float64 `json:"score"`
	// Why says in words why it is or is not listed.
	Why string `json:"why"`
}

// Evaluate walks the hits in time order: a hit lists the indicator when
// the weights of the hits within Window up to it reach 1, or when the
// indicator is listed already; every such hit extends the listing to
// Expire after it. Hits before a manual delisting do not count.
func (p Policy) Evaluate(ind *store.IntelIndicator, now time.Time) Status {
	var hits []store.IntelHit
	for _, h := range ind.Hits {
		if ind.Delisted == nil || h.Time.After(ind.Delisted.At) {
			hits = append(hits, h)
		}
	}
	var st Status
	counts := map[string]int{}
	for i, h := range hits {
		score := 0.0
		for j := i; j >= 0 && h.Time.Sub(hits[j].Time) < p.Window; j-- {
			score += p.weight(hits[j].Source)
		}
		st.Score = score
		if score >= 1-1e-9 || h.Time.Before(st.Until) {
			if !h.Time.Before(st.Until) {
				st.Since = h.Time
			}
			st.Until = h.Time.Add(p.Expire)
		}
	}
	for _, h := range hits {
		if now.Sub(h.Time) < p.Window {
			counts[h.Source]++
		}
	}
	st.Listed = !st.Until.IsZero() && now.Before(st.Until)
	var parts []string
	for _, src := range sortedKeys(counts) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[src], src))
	}
	seen := "no hits"
	if len(parts) > 0 {
		seen = strings.Join(parts, ", ") + " hits"
	}
	seen += " within " + p.Window.String()
	switch {
	case st.Listed:
		st.Why = fmt.Sprintf("listed since %s until %s (%s after the last hit): %s", st.Since.UTC().Format(time.RFC3339),
			st.Until.UTC().Format(time.RFC3339), p.Expire, seen)
	case !st.Until.IsZero():
		st.Why = fmt.Sprintf("not listed: the listing expired at %s, %s after the last hit", st.Until.UTC().Format(time.RFC3339), p.Expire)
	case ind.Delisted != nil && len(hits) == 0:
		st.Why = fmt.Sprintf("not listed: delisted by hand at %s (%s), no hit since", ind.Delisted.At.UTC().Format(time.RFC3339), ind.Delisted.Reason)
	default:
		st.Why = fmt.Sprintf("not listed: %s weigh %.2f of the 1 needed (list_after: spamtrap %g, user_complaint %g)", seen, st.Score, p.Spamtrap, p.Complaint)
	}
	if ind.Delisted != nil && len(hits) > 0 {
		st.Why += fmt.Sprintf("; delisted by hand at %s (%s), hits before that do not count", ind.Delisted.At.UTC().Format(time.RFC3339), ind.Delisted.Reason)
	}
	return st
}

func sortedKeys(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) }
