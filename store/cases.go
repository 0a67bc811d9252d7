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

// Own-network cases (package cases owns their logic; this file keeps
// them). Buckets, created on first use:
//
//	cases            case id -> JSON Case
//	cases_open       case key ("subscriber:ID" or "ip:ADDR") -> case id
//	                 of the one case of that key that is not resolved
//	cases_reports    report id -> case id: which reports were handled
//	cases_meta       "cursor" -> the newest report id handled
//	cases_active     case id -> empty, for every case that is not resolved
//	                 or has a webhook call pending: what the worker looks
//	                 at on each pass, however many resolved cases there are
var (
	bucketCasesActive = []byte("cases_active")
	bucketCases       = []byte("cases")
	bucketCasesOpen   = []byte("cases_open")
	bucketCaseReports = []byte("cases_reports")
	bucketCasesMeta   = []byte("cases_meta")
	keyCasesCursor    = []byte("cursor")
)

// Case states.
const (
	CaseOpen       = "open"
	CaseNotified   = "notified"
	CaseRestricted = "restricted"
	CaseResolved   = "resolved"
)

// Case collects the reports about one subscriber (or, when nobody is
// known, one address) until it is resolved.
type Case struct {
	ID    ID     `json:"id"`
	Key   string `json:"key"`
	State string `json:"state"`
	// Subscriber is empty when Key is an address.
	SubscriberID string `json:"subscriber_id,omitempty"`
	Email        string `json:"email,omitempty"`
	Name         string `json:"name,omitempty"`
	// MatchSource is where the subscriber was found (assignments,
	// static, lookup), or "" when nobody was.
	MatchSource string `json:"match_source,omitempty"`
	// Ambiguous: the address was shared then; Candidates lists who held
	// it and Note says why the match could not be made.
	Ambiguous  bool            `json:"ambiguous,omitempty"`
	Candidates []CaseCandidate `json:"candidates,omitempty"`
	Note       string          `json:"note,omitempty"`

	IPs        []netip.Addr `json:"ips"`
	Complaints int          `json:"complaints"`
	TrapHits   int          `json:"trap_hits"`
	FirstSeen  time.Time    `json:"first_seen"`
	LastSeen   time.Time    `json:"last_seen"`
	// Reports links the case's reports, oldest first (the newest
	// MaxCaseReports; the counts above count all).
	Reports []CaseReport `json:"reports"`
	History []CaseEvent  `json:"history"`

	// NotifiedUpTo is the number of Reports entries (counted over all
	// time: Complaints+TrapHits) that a notification covered.
	NotifiedUpTo  int        `json:"notified_up_to,omitempty"`
	LastNotified  time.Time  `json:"last_notified,omitzero"`
	Notifications []Delivery `json:"notifications,omitempty"`
	// NotifyFailures counts failed mails since the last one sent;
	// NotifyRetryAt is when the next may be tried.
	NotifyFailures int       `json:"notify_failures,omitempty"`
	NotifyRetryAt  time.Time `json:"notify_retry_at,omitzero"`
	Webhook        *Webhook  `json:"webhook,omitempty"`
	WebhookHistory []Webhook `json:"webhook_history,omitempty"`
	Updated        time.Time `json:"updated"`
}

// MaxCaseReports bounds the report links kept on one case.
const MaxCaseReports = 1000

// CaseCandidate is one subscriber an ambiguous address may belong to.
type CaseCandidate struct {
	SubscriberID string `json:"subscriber_id"`
	Email        string `json:"email,omitempty"`
}

// CaseReport links one report to its case.
type CaseReport struct {
	ID      ID         `json:"id"`
	Channel string     `json:"channel"`
	At      time.Time  `json:"at"` // when the abuse happened
	IP      netip.Addr `json:"ip"`
	Port    int        `json:"port,omitempty"`
	// EvidenceSource is XARF's: spamtrap or user_complaint.
	EvidenceSource string `json:"evidence_source"`
}

// CaseEvent is one change of a case's state: who, when and why.
type CaseEvent struct {
	At     time.Time `json:"at"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
}

// Delivery is one notification mail.
type Delivery struct {
	At      time.Time `json:"at"`
	To      string    `json:"to"`
	Reports int       `json:"reports"`
	DryRun  bool      `json:"dry_run,omitempty"`
	Result  string    `json:"result"`
}

// WebhookPending is the Status of a call still to be made or retried.
const WebhookPending = "pending"

// Webhook is one restrict or unrestrict call and its attempts.
type Webhook struct {
	Action      string    `json:"action"` // restrict | unrestrict
	Reason      string    `json:"reason"`
	By          string    `json:"by"`
	Created     time.Time `json:"created"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Status is pending, done, dry-run or failed.
	Status string `json:"status"`
	// Answers are the endpoint's replies (or errors), oldest first.
	Answers []string `json:"answers,omitempty"`
}

func casesBucket(tx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	if tx.Writable() {
		return tx.CreateBucketIfNotExists(name)
	}
	return tx.Bucket(name), nil
}

// CasesCursor returns the newest report id the case worker handled.
func (s *Store) CasesCursor() (ID, error) {
	var id ID
	err := s.db.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketCasesMeta); b != nil {
			copy(id[:], b.Get(keyCasesCursor))
		}
		return nil
	})
	return id, err
}

// ScanReports returns, oldest first, up to limit reports with ids after
// from whose metadata keep accepts and that no case has handled yet, with
// their XARF documents, and the newest id looked at (the cursor to go on
// from; from itself when there was nothing).
func (s *Store) ScanReports(from ID, limit int, keep func(*Report) bool) ([]Report, ID, error) {
	var out []Report
	last := from
	err := s.db.View(func(tx *bbolt.Tx) error {
		done := tx.Bucket(bucketCaseReports)
		c := tx.Bucket(bucketRecords).Cursor()
		k, v := c.Seek(from[:])
		if k != nil && bytes.Equal(k, from[:]) {
			k, v = c.Next()
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			copy(last[:], k)
			if done != nil && done.Get(k) != nil {
				continue
			}
			if r := scanReport(v, keep); r != nil {
				out = append(out, *r)
			}
		}
		return nil
	})
	return out, last, err
}

// CaseTx is one write transaction over cases.
type CaseTx struct{ tx *bbolt.Tx }

// Open returns the unresolved case of key, or nil.
func (c *CaseTx) Open(key string) (*Case, error) {
	b, err := casesBucket(c.tx, bucketCasesOpen)
	if err != nil || b == nil {
		return nil, err
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	return c.Get(ID(v))
}

// Get returns the case id, or ErrNotFound.
func (c *CaseTx) Get(id ID) (*Case, error) {
	b, err := casesBucket(c.tx, bucketCases)
	if err != nil {
		return nil, err
	}
	if b == nil { // a read before the first case
		return nil, ErrNotFound
	}
	v := b.Get(id[:])
	if v == nil {
		return nil, ErrNotFound
	}
	var cs Case
	if err := json.Unmarshal(v, &cs); err != nil {
		return nil, fmt.Errorf("decoding case %s: %w", id, err)
	}
	return &cs, nil
}

// Put stores cs and keeps the open-case index in step with its state.
func (c *CaseTx) Put(cs *Case) error {
	b, err := casesBucket(c.tx, bucketCases)
	if err != nil {
		return err
	}
	open, err := casesBucket(c.tx, bucketCasesOpen)
	if err != nil {
		return err
	}
	v, err := json.Marshal(cs)
	if err != nil {
		return fmt.Errorf("encoding case: %w", err)
	}
	if err := b.Put(cs.ID[:], v); err != nil {
		return fmt.Errorf("storing case: %w", err)
	}
	active, err := casesBucket(c.tx, bucketCasesActive)
	if err != nil {
		return err
	}
	if cs.State != CaseResolved || (cs.Webhook != nil && cs.Webhook.Status == WebhookPending) {
		err = active.Put(cs.ID[:], nil)
	} else {
		err = active.Delete(cs.ID[:])
	}
	if err != nil {
		return fmt.Errorf("indexing case: %w", err)
	}
	if cs.State == CaseResolved {
		if cur := open.Get([]byte(cs.Key)); cur != nil && bytes.Equal(cur, cs.ID[:]) {
			return open.Delete([]byte(cs.Key))
		}
		return nil
	}
	return open.Put([]byte(cs.Key), cs.ID[:])
}

// Handled records that report was added to case cs.
func (c *CaseTx) Handled(report ID, cs ID) error {
	b, err := casesBucket(c.tx, bucketCaseReports)
	if err != nil {
		return err
	}
	return b.Put(report[:], cs[:])
}

// UpdateCases runs fn in one durable transaction and then moves the
// worker's cursor to cursor (when it is not zero): the cases a batch of
// reports changed and the cursor past them are written together, so a
// crash repeats a batch whole or not at all.
func (s *Store) UpdateCases(cursor ID, fn func(*CaseTx) error) error {
	return s.Commit(func(tx *bbolt.Tx) error {
		if err := fn(&CaseTx{tx: tx}); err != nil {
			return err
		}
		if cursor == (ID{}) {
			return nil
		}
		b, err := casesBucket(tx, bucketCasesMeta)
		if err != nil {
			return err
		}
		return b.Put(keyCasesCursor, cursor[:])
	})
}

// UpdateCase loads case id, lets fn change it and stores it.
func (s *Store) UpdateCase(id ID, fn func(*Case) error) (*Case, error) {
	var out *Case
	err := s.UpdateCases(ID{}, func(c *CaseTx) error {
		cs, err := c.Get(id)
		if err != nil {
			return err
		}
		if err := fn(cs); err != nil {
			return err
		}
		out = cs
		return c.Put(cs)
	})
	return out, err
}

// GetCase returns case id, or ErrNotFound.
func (s *Store) GetCase(id ID) (*Case, error) {
	var out *Case
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		out, err = (&CaseTx{tx: tx}).Get(id)
		return err
	})
	return out, err
}

// ErrConflict is an action on a case that its state does not allow; the
// error's text says why and may be shown to the client.
var ErrConflict = errors.New("not allowed in the case's state")

// ActiveCases returns every case that is not resolved or has a webhook
// call pending.
func (s *Store) ActiveCases() ([]*Case, error) {
	var out []*Case
	err := s.db.View(func(tx *bbolt.Tx) error {
		a := tx.Bucket(bucketCasesActive)
		if a == nil {
			return nil
		}
		ct := &CaseTx{tx: tx}
		return a.ForEach(func(k, _ []byte) error {
			cs, err := ct.Get(ID(k))
			if err != nil {
				return err
			}
			out = append(out, cs)
			return nil
		})
	})
	return out, err
}

// ActiveCaseCount is the number of cases ActiveCases would return,
// without reading them.
func (s *Store) ActiveCaseCount() (int, error) {
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		if a := tx.Bucket(bucketCasesActive); a != nil {
			n = a.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// ForEachCase calls fn on every case, newest first.
func (s *Store) ForEachCase(fn func(*Case) error) error {
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCases)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var cs Case
			if err := json.Unmarshal(v, &cs); err != nil {
				return fmt.Errorf("decoding case %x: %w", k, err)
			}
			if err := fn(&cs); err != nil {
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

// CaseQuery selects a page of cases for Cases. Empty fields match all.
type CaseQuery struct {
	State      string
	Subscriber string
	// Before is the cursor: only cases older than it (the next_cursor
	// of the page before).
	Before ID
	// Limit bounds the page (MaxLimit when 0 or larger).
	Limit int
	// Examine bounds the cases one call reads when State or Subscriber
	// is set (ScanBound when 0): no index answers them, and a rare match
	// must not make one request walk every case ever opened. A call that
	// reaches the bound returns what it found, maybe fewer than Limit or
	// none, with the cursor of the last case it read.
	Examine int
}

// Cases returns a page of the cases q selects, newest first, and the
// cursor of the next page: zero when there is none.
func (s *Store) Cases(q CaseQuery) ([]Case, ID, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		q.Limit = MaxLimit
	}
	examine := q.Examine
	if examine <= 0 {
		examine = ScanBound
	}
	filtered := q.State != "" || q.Subscriber != ""
	var (
		out      []Case
		next     ID
		last     ID // the last case read, when filtered
		examined int
	)
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCases)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if q.Before == (ID{}) {
			k, v = c.Last()
		} else if k, v = c.Seek(q.Before[:]); k == nil {
			k, v = c.Last()
		}
		for ; k != nil; k, v = c.Prev() {
			if q.Before != (ID{}) && bytes.Compare(k, q.Before[:]) >= 0 {
				continue
			}
			if filtered {
				if examined == examine {
					// The bound, with more to read: the caller goes on
					// below the last case read.
					next = last
					return nil
				}
				examined++
				copy(last[:], k)
				// Only the fields filtered on: a case holds up to
				// MaxCaseReports report links, decoded for matches only.
				var head struct {
					State        string `json:"state"`
					SubscriberID string `json:"subscriber_id"`
				}
				if err := json.Unmarshal(v, &head); err != nil {
					return fmt.Errorf("decoding case %x: %w", k, err)
				}
				if (q.State != "" && head.State != q.State) || (q.Subscriber != "" && head.SubscriberID != q.Subscriber) {
					continue
				}
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].ID
				return nil
			}
			var cs Case
			if err := json.Unmarshal(v, &cs); err != nil {
				return fmt.Errorf("decoding case %x: %w", k, err)
			}
			out = append(out, cs)
		}
		return nil
	})
	return out, next, err
}
