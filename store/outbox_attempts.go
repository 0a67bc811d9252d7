package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

// The history of an outbox entry: one row per SMTP transaction of a
// delivery and per decision that ended a claim without one (withheld,
// dry run, duplicate, rate limit, sent by another node, cancelled, …).
// Rows live in their own bucket, keyed by the entry's id and a sequence
// number, so that the entry itself (read by every listing and by the
// reporter's due scan) stays small; each row is written by the very
// transaction that records the outcome it describes, so keeping a
// history costs page writes in that commit and no fsync of its own.
//
//	outbox_attempts   id || 4-byte big-endian seq -> JSON Attempt
//
// Sequence numbers start at 0 and only grow; only the newest
// MaxAttemptsKept rows of an entry are kept, so the first kept row's seq
// is how many older ones were dropped. The rows go with their entry:
// every path that deletes an entry (retention, orphan sweeps) deletes
// them in the same transaction.

var bucketOutboxAttempts = []byte("outbox_attempts")

// MaxAttemptsKept bounds the rows kept per outbox entry: a desk that
// answers 4xx for two days makes about 15 tries with the default backoff,
// a rate-limited contact may wait a few times more; older rows are
// dropped (and counted) so that a stuck entry cannot grow without bound.
const MaxAttemptsKept = 32

// Bounds of an attempt's text fields, in bytes: a desk's reply can be
// anything up to the line length a server accepts, and it is shown in the
// console and the API.
const (
	MaxAttemptReply  = 512
	MaxAttemptDetail = 512
	maxAttemptHost   = 255
)

// AttemptOutcome is what one row of an entry's history says happened.
type AttemptOutcome string

const (
	// Delivery attempts: one SMTP transaction each.

	// AttemptSent: the desk accepted the message (for some recipients at
	// least; Detail names those that refused it).
	AttemptSent AttemptOutcome = "sent"
	// AttemptTempFail: a 4xx, a network or TLS failure, a timeout, or a
	// failure of ours before the transaction (contact lookup, rendering,
	// reading the store); the entry is retried.
	AttemptTempFail AttemptOutcome = "temp-failure"
	// AttemptPermFail: a 5xx to the whole transaction, or every recipient
	// refused.
	AttemptPermFail AttemptOutcome = "perm-failure"
	// AttemptInterrupted: a claim ended without an outcome (a stop, a
	// crash, a lease that ran out); Detail says whether the message had
	// been transmitted.
	AttemptInterrupted AttemptOutcome = "interrupted"

	// Decisions: the entry moved on without an SMTP transaction.

	AttemptGaveUp      AttemptOutcome = "gave-up"
	AttemptRateLimited AttemptOutcome = "rate-limited"
	AttemptDeferred    AttemptOutcome = "deferred"
	AttemptWithheld    AttemptOutcome = "withheld"
	AttemptDryRun      AttemptOutcome = "dry-run"
	AttemptDuplicate   AttemptOutcome = "duplicate"
	// AttemptSentElsewhere: another node of the cluster sent the report
	// (or the report it is a duplicate of); Node names that node.
	AttemptSentElsewhere AttemptOutcome = "sent-elsewhere"
	AttemptCancelled     AttemptOutcome = "cancelled"
	AttemptRequeued      AttemptOutcome = "requeued"
	AttemptWithdrawn     AttemptOutcome = "withdrawn"
)

// Attempt is one row of an outbox entry's history.
type Attempt struct {
	// Seq numbers the rows of an entry from 0.
	Seq uint32    `json:"seq"`
	At  time.Time `json:"at"`
	// Node is the node that made the attempt or decision: cluster.node
	// in a cluster, else the host name (Options.Node).
	Node    string         `json:"node,omitempty"`
	Outcome AttemptOutcome `json:"outcome"`
	// MX is the host the transaction went to (an MX host or the
	// smarthost), IP the address it connected to.
	MX string     `json:"mx,omitempty"`
	IP netip.Addr `json:"ip,omitzero"`
	// Code, EnhancedCode and Reply are the server's last answer
	// (EnhancedCode as "5.7.1"); Reply is truncated to MaxAttemptReply
	// bytes, without control characters.
	Code         int    `json:"code,omitempty"`
	EnhancedCode string `json:"enhanced_code,omitempty"`
	Reply        string `json:"reply,omitempty"`
	// Detail is ours: the error without a server answer, or the reason
	// of a decision (bounded like Reply).
	Detail string `json:"detail,omitempty"`
}

// AttemptHistory is what AttemptsOf returns: the kept rows, oldest first,
// and how many older rows were dropped.
type AttemptHistory struct {
	Attempts []Attempt `json:"attempts"`
	Dropped  uint32    `json:"dropped,omitempty"`
}

func attemptKey(id ID, seq uint32) []byte {
	return binary.BigEndian.AppendUint32(append(make([]byte, 0, 20), id[:]...), seq)
}

// cleanText makes s safe to keep and show: invalid UTF-8 and control
// characters (CR, LF, escapes, C1, bidi overrides) become spaces or are
// dropped, runs of white space fold, and it is cut to at most n bytes on
// a character boundary.
func cleanText(s string, n int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r), unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
		if b.Len() >= n {
			break
		}
	}
	out := b.String()
	if len(out) > n {
		i := n
		for i > 0 && !utf8.RuneStart(out[i]) {
			i--
		}
		out = strings.TrimRight(out[:i], " ")
	}
	return out
}

// nodeName is the default Options.Node: the host name, or "local".
func nodeName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "local"
}

// addAttemptTx appends a to the history of entry id inside tx, as the
// next row, dropping the oldest beyond MaxAttemptsKept. An empty
// a.Node is node.
func addAttemptTx(tx *bbolt.Tx, id ID, node string, a Attempt) error {
	b, err := tx.CreateBucketIfNotExists(bucketOutboxAttempts)
	if err != nil {
		return fmt.Errorf("recording an outbox attempt: %w", err)
	}
	c := b.Cursor()
	var first, next uint32
	k, _ := c.Seek(id[:])
	if k != nil && bytes.HasPrefix(k, id[:]) && len(k) == 20 {
		first = binary.BigEndian.Uint32(k[16:])
		// The entry's last row: the key before the next entry's first.
		top := attemptKey(id, math.MaxUint32)
		lk, _ := c.Seek(top)
		switch {
		case lk == nil:
			lk, _ = c.Last()
		case bytes.Equal(lk, top):
			return fmt.Errorf("recording an outbox attempt of %s: sequence exhausted", id)
		default:
			lk, _ = c.Prev()
		}
		next = binary.BigEndian.Uint32(lk[16:]) + 1
	}
	a.Seq = next
	if a.Node == "" {
		a.Node = node
	}
	a.Node = cleanText(a.Node, maxAttemptHost)
	a.MX = cleanText(a.MX, maxAttemptHost)
	a.EnhancedCode = cleanText(a.EnhancedCode, 16)
	a.Reply = cleanText(a.Reply, MaxAttemptReply)
	a.Detail = cleanText(a.Detail, MaxAttemptDetail)
	if a.Code < 0 || a.Code > 999 {
		a.Code = 0
	}
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding an outbox attempt: %w", err)
	}
	// bbolt's default fill, not appendFill: a retry of an entry hours old
	// inserts among newer entries' rows, and full pages would split on
	// every such insert.
	if err := b.Put(attemptKey(id, next), v); err != nil {
		return fmt.Errorf("recording an outbox attempt of %s: %w", id, err)
	}
	for ; next-first+1 > MaxAttemptsKept; first++ {
		if err := b.Delete(attemptKey(id, first)); err != nil {
			return fmt.Errorf("dropping an old outbox attempt of %s: %w", id, err)
		}
	}
	return nil
}

// deleteAttemptsTx deletes the history of entry k.
func deleteAttemptsTx(tx *bbolt.Tx, k []byte) error {
	b := tx.Bucket(bucketOutboxAttempts)
	if b == nil || len(k) != 16 {
		return nil
	}
	var keys [][]byte
	c := b.Cursor()
	for ak, _ := c.Seek(k); ak != nil && bytes.HasPrefix(ak, k); ak, _ = c.Next() {
		keys = append(keys, append([]byte(nil), ak...))
	}
	for _, ak := range keys {
		if err := b.Delete(ak); err != nil {
			return fmt.Errorf("deleting the attempts of outbox entry %x: %w", k, err)
		}
	}
	return nil
}

// checkAttempts verifies the histories for check-store: each row's key is
// an id and a sequence number, its value JSON, its entry present (rows go
// with their entry in one transaction), and no entry holds more than
// MaxAttemptsKept.
func checkAttempts(tx *bbolt.Tx, rep *CheckReport) error {
	var (
		cur ID
		n   int
	)
	ob := tx.Bucket(bucketOutbox)
	return tx.Bucket(bucketOutboxAttempts).ForEach(func(k, v []byte) error {
		if len(k) != 20 {
			rep.add("bucket %s: malformed key %x", bucketOutboxAttempts, k)
			return nil
		}
		var id ID
		copy(id[:], k)
		if id != cur {
			cur, n = id, 0
			if ob.Get(id[:]) == nil {
				rep.add("bucket %s: rows of outbox entry %s, which does not exist", bucketOutboxAttempts, id)
			}
		}
		if n++; n == MaxAttemptsKept+1 {
			rep.add("bucket %s: outbox entry %s has more than %d rows", bucketOutboxAttempts, id, MaxAttemptsKept)
		}
		if !json.Valid(v) {
			rep.add("bucket %s: row %d of outbox entry %s is not valid JSON", bucketOutboxAttempts, binary.BigEndian.Uint32(k[16:]), id)
		}
		return nil
	})
}

// AttemptsOf returns the history of outbox entry id, oldest first; an
// entry without rows (none yet, or one from before schema 5) has an
// empty one.
func (s *Store) AttemptsOf(id ID) (AttemptHistory, error) {
	var h AttemptHistory
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		h, err = AttemptsTx(tx, id)
		return err
	})
	return h, err
}

// AttemptsTx is AttemptsOf inside a transaction.
func AttemptsTx(tx *bbolt.Tx, id ID) (AttemptHistory, error) {
	h := AttemptHistory{Attempts: []Attempt{}}
	b := tx.Bucket(bucketOutboxAttempts)
	if b == nil {
		return h, nil
	}
	c := b.Cursor()
	for k, v := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]); k, v = c.Next() {
		if len(k) != 20 {
			continue
		}
		seq := binary.BigEndian.Uint32(k[16:])
		if len(h.Attempts) == 0 {
			h.Dropped = seq
		}
		var a Attempt
		if err := json.Unmarshal(v, &a); err != nil {
			return h, fmt.Errorf("decoding attempt %d of outbox entry %s: %w", seq, id, err)
		}
		a.Seq = seq
		h.Attempts = append(h.Attempts, a)
	}
	return h, nil
}
