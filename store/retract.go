package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/bbolt"
)

// OutboxWithdrawn: the complainant retracted the complaint (a not-spam
// feedback report about the same message) before its report was sent.
// Terminal: the report stays stored and visible, and is never sent.
const OutboxWithdrawn OutboxStatus = "withdrawn"

// retractScanLimit bounds how many of a channel's newest records one
// retraction looks at: a not-spam report follows its complaint within
// days, and a search must not walk years of data.
const retractScanLimit = 100_000

// Retraction refers to an earlier complaint: a not-spam feedback report
// about the message a complaint of the same channel reported.
type Retraction struct {
	// ID is the retracting message's id (named in the withdrawn entry).
	ID ID
	// Channel: only complaints of this channel match, so that one
	// provider can never withdraw another's complaint.
	Channel string
	// MessageID is the reported message's Message-ID as the complaint's
	// XARF document holds it (message_id); required.
	MessageID string
	// SourceIP, when valid, must be the complaint's source too.
	SourceIP netip.Addr
}

// RetractResult is what Retract found and did.
type RetractResult struct {
	// Complaint is the matched complaint; zero when none matched.
	Complaint ID
	// Status is the complaint's outbox status before (OutboxWithdrawn
	// when it was withdrawn already; "" when it has no outbox entry).
	Status OutboxStatus
	// Withdrawn: its pending report was withdrawn now.
	Withdrawn bool
}

// ErrNoMessageID is returned by Retract for a retraction without
// Message-ID: nothing could be matched safely.
var ErrNoMessageID = errors.New("store: retraction without Message-ID")

// Retract finds the newest complaint of r.Channel whose report has
// r.MessageID (and r.SourceIP when set) and that was not withdrawn
// already, and withdraws its outbox entry if that is still pending: one
// durable transaction sets it to OutboxWithdrawn, out of the due index.
// A duplicate is withdrawn too, and the report it was counted in counts
// one incident less while that one is pending. An entry in any other
// state (sending, sent, dry-run, withheld, failed) is left alone: the
// result says which.
func (s *Store) Retract(r Retraction, now time.Time) (RetractResult, error) {
	if r.MessageID == "" {
		return RetractResult{}, ErrNoMessageID
	}
	// The search reads; only the withdrawal writes, so that the writer
	// (and every SMTP session waiting for its 250) is not held by a scan.
	var cands []ID
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		cands, err = retractCandidates(tx, &r)
		return err
	})
	if err != nil || len(cands) == 0 {
		return RetractResult{}, err
	}
	var res RetractResult
	err = s.Commit(func(tx *bbolt.Tx) error {
		res = RetractResult{}
		for _, id := range cands {
			e, err := GetOutboxTx(tx, id)
			if errors.Is(err, ErrNotFound) {
				if tx.Bucket(bucketRecords).Get(id[:]) == nil {
					continue // deleted since the search
				}
				res.Complaint = id
				return nil
			}
			if err != nil {
				return err
			}
			if e.Status == OutboxWithdrawn {
				if res.Complaint == (ID{}) {
					res.Complaint, res.Status = id, e.Status // all withdrawn: say the newest
				}
				continue
			}
			res = RetractResult{Complaint: id, Status: e.Status}
			if e.Status != OutboxPending && e.Status != OutboxDuplicate {
				return nil
			}
			if e.Status == OutboxDuplicate && e.DuplicateOf != (ID{}) {
				if err := uncount(tx, e.DuplicateOf, now); err != nil {
					return err
				}
			}
			e.Status, e.NextAttempt, e.Updated = OutboxWithdrawn, time.Time{}, now
			e.Reason = fmt.Sprintf("withdrawn: the complainant retracted this complaint (not-spam feedback report %s)", r.ID)
			res.Withdrawn = true
			if err := PutOutboxTx(tx, e); err != nil {
				return err
			}
			return addAttemptTx(tx, e.ID, s.node, Attempt{At: now, Outcome: AttemptWithdrawn, Detail: e.Reason})
		}
		return nil
	})
	return res, err
}

// uncount takes one incident off a pending report a withdrawn duplicate
// was counted in.
func uncount(tx *bbolt.Tx, id ID, now time.Time) error {
	p, err := GetOutboxTx(tx, id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil || p.Status != OutboxPending || p.Count <= 1 {
		return err
	}
	p.Count--
	p.Updated = now
	return PutOutboxTx(tx, p)
}

// retractCandidates lists the channel's reports with r's Message-ID (and
// source), newest first.
func retractCandidates(tx *bbolt.Tx, r *Retraction) ([]ID, error) {
	// A cheap filter before decoding: documents hold the field as
	// encoding/json writes it, without spaces, with '<' and '>' as they
	// are (xarf's encoder) or escaped (json.Marshal's default).
	var needles [][]byte
	for _, html := range []bool{false, true} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		if err := enc.Encode(r.MessageID); err != nil {
			return nil, err
		}
		needles = append(needles, append([]byte(`"message_id":`), bytes.TrimSuffix(b.Bytes(), []byte("\n"))...))
	}
	prefix := channelPrefix(r.Channel)
	c := tx.Bucket(bucketByChannel).Cursor()
	k, _ := c.Seek(append(prefix, 0xff))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	var out []ID
	for n := 0; k != nil && bytes.HasPrefix(k, prefix) && n < retractScanLimit; k, _ = c.Prev() {
		n++
		rec, ok, err := getRecord(tx, k[len(prefix):])
		if err != nil || !ok || len(rec.rep) == 0 || !(bytes.Contains(rec.xarf, needles[0]) || bytes.Contains(rec.xarf, needles[1])) {
			continue // an unreadable record is Recover's business
		}
		var doc struct {
			MessageID string `json:"message_id"`
			Source    string `json:"source_identifier"`
		}
		if json.Unmarshal(rec.xarf, &doc) != nil || doc.MessageID != r.MessageID {
			continue
		}
		if r.SourceIP.IsValid() {
			if a, err := netip.ParseAddr(doc.Source); err != nil || a.Unmap() != r.SourceIP.Unmap() {
				continue
			}
		}
		var id ID
		copy(id[:], k[len(prefix):])
		out = append(out, id)
	}
	return out, nil
}
