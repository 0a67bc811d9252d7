// Package store keeps xarfd's data in one bbolt file: received messages
// with their envelope and bytes, their XARF reports, the indexes that
// queries and retention walk, a quarantine for what cannot be read, and
// the reporter's outbox.
//
// Every write goes through one committer goroutine that groups whatever
// was queued while the previous transaction was committing into the next
// one (group commit). A message is acknowledged only after the transaction
// holding it has been fsynced; NoSync is never used. One fsync then serves
// many SMTP sessions, which is what lets a 2-core machine take thousands of
// messages per second while keeping "250 means durable".
//
// Buckets (schema version 5):
//
//	meta                  "schema" -> uint64 big-endian; "probe" -> the
//	                      time of the last health probe (health.go);
//	                      "migrate3_after" while migrating to schema 3,
//	                      "migrate4_after" while backfilling stats_hourly
//	records               id -> message record, report and message bytes
//	                      in one value with their checksum (see record.go)
//	by_channel            channel || 0x00 || id -> empty; ids are UUIDv7,
//	                      so this is also the per-channel time index that
//	                      queries and retention walk
//	by_ip                 16-byte source IP || id -> empty
//	outbox                id -> JSON OutboxEntry (and the outbox_* buckets)
//	outbox_attempts       id || seq -> JSON Attempt, the newest
//	                      MaxAttemptsKept of each entry (outbox_attempts.go)
//	quarantine            key -> JSON QuarantineEntry
//	stats_hourly          hour || channel -> counters (stats.go); the
//	stats_now             newest hour's are in stats_now
//
// A report has the id of the message it came from, so the message's
// stored bytes are the report's evidence. Storing a message with its
// report touches five B+trees (records, by_channel, by_ip, outbox,
// outbox_due); each one costs page writes inside the commit that the
// SMTP client waits for, which is why they are not more.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.etcd.io/bbolt"
)

// FileName is the database file inside the data directory.
const FileName = "xarfd.db"

// SchemaVersion is the layout this binary reads and writes.
const SchemaVersion = 5

var (
	bucketMeta       = []byte("meta")
	bucketRecords    = []byte("records")
	bucketByChannel  = []byte("by_channel")
	bucketQuarantine = []byte("quarantine")
	keySchema        = []byte("schema")
)

// appendFill is the FillPercent of buckets whose keys only grow (UUIDv7
// ids, their text form, or a prefix then an id): bbolt's default of one
// half leaves every page of an append-only tree half empty, so the tree
// has twice the leaves and grows a level sooner.
const appendFill = 1.0

// channelKey is the by_channel key of id; channel names never contain
// 0x00 (config allows [a-z0-9_-]), so the prefix is unambiguous.
func channelKey(channel string, id ID) []byte {
	k := make([]byte, 0, len(channel)+1+len(id))
	return append(append(append(k, channel...), 0), id[:]...)
}

func channelPrefix(channel string) []byte { return append([]byte(channel), 0) }

// ErrClosed is returned by writes after Close has begun.
var ErrClosed = errors.New("store: closed")

// ErrCommit wraps the error of a transaction that could not be made
// durable (disk full, I/O error): every operation of its group gets it,
// and Health turns bad until a commit succeeds. It is temporary from the
// client's point of view: 451 over SMTP, 503 over HTTP.
var ErrCommit = errors.New("store: commit failed")

// ErrNotFound is returned for an unknown id.
var ErrNotFound = errors.New("store: not found")

// ErrInUse means another process holds the database open.
var ErrInUse = errors.New("database is in use by another process")

// Options tune Open; the zero value is fine.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file lock before failing with ErrInUse.
	LockTimeout time.Duration
	// MaxBatch caps the operations one group commit takes.
	MaxBatch int
	// OnCommit, when set, is called by the committer after each durable
	// transaction, once its waiters have been told, with the number of
	// operations it held and how long bbolt took to commit it (the work
	// and both fsyncs). It runs on the committer: it must not block.
	OnCommit func(ops int, took time.Duration)
	// OnDamage, when set, is called with the id of each damaged record
	// a read meets (its checksum does not hold, or it does not decode);
	// the read itself fails with a *DamagedError. It may be called
	// concurrently and for the same id again on each read: it must not
	// block.
	OnDamage func(id ID)
	// Migrations overrides the migration table (tests).
	Migrations []Migration
	// ProbeInterval is how often a store whose last commit failed tries
	// a probe commit (DefaultProbeInterval when zero).
	ProbeInterval time.Duration
	// Node names this node in the outbox entries' attempt histories:
	// cluster.node in a cluster, else the host name (the default; "local"
	// when it cannot be read).
	Node string
	// FaultCommit, when set, is called in every write transaction after
	// its operations; an error from it fails the commit as an I/O error
	// would, for all operations of the group. Fault injection for tests.
	FaultCommit func() error
}

// Store is an open database. All methods are safe for concurrent use.
type Store struct {
	db   *bbolt.DB
	path string

	mu     sync.RWMutex // guards closed against Commit's send on ops
	closed bool
	ops    chan *op
	done   chan struct{}

	maxBatch    int
	onCommit    func(int, time.Duration)
	onDamage    func(ID)
	faultCommit func() error
	health      health
	stopProbe   chan struct{}
	foundSchema uint64
	// node is Options.Node, for attempt histories.
	node string
}

type op struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// Open opens or creates the database in dir and migrates it to
// SchemaVersion.
func Open(dir string, o Options) (*Store, error) {
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.Migrations == nil {
		o.Migrations = migrations
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: o.LockTimeout,
		// The freelist is rebuilt on open instead of written on every
		// commit: smaller commits, same durability of the data itself.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("opening %s: %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	s := &Store{
		db:       db,
		path:     path,
		ops:      make(chan *op, o.MaxBatch),
		done:     make(chan struct{}),
		maxBatch: o.MaxBatch,
		onCommit: o.OnCommit,
		onDamage: o.OnDamage,

		faultCommit: o.FaultCommit,
		stopProbe:   make(chan struct{}),
		node:        o.Node,
	}
	if s.node == "" {
		s.node = nodeName()
	}
	if err := s.migrate(o.Migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	s.health.set(nil)
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	go s.committer()
	go s.prober(o.ProbeInterval, s.stopProbe)
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close commits what is queued, stops the committer and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stopProbe)
	close(s.ops)
	s.mu.Unlock()
	<-s.done
	return s.db.Close()
}

// Commit runs fn in a write transaction shared with other queued
// operations and returns once that transaction is durable. fn may run more
// than once (when another operation of its group fails, the group is
// retried without it), so it must only touch the transaction. An error
// from fn fails only this operation.
func (s *Store) Commit(fn func(*bbolt.Tx) error) error {
	o := &op{fn: fn, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.ops <- o
	s.mu.RUnlock()
	return <-o.done
}

// View runs fn in a read-only transaction. A fault on the memory map
// while fn runs is returned as an error wrapping ErrDamaged.
func (s *Store) View(fn func(*bbolt.Tx) error) error { return s.view(fn) }

// view and update are bbolt's View and Update with guardFault: every read
// of the memory map in this package goes through them, so a file that
// shrank under the daemon costs an error, not the process.
// A damaged record met on the way is reported to OnDamage.
func (s *Store) view(fn func(*bbolt.Tx) error) (err error) {
	defer s.noteDamage(&err)
	defer guardFault(&err)()
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bbolt.Tx) error) (err error) {
	defer s.noteDamage(&err)
	defer guardFault(&err)()
	return s.db.Update(fn)
}

func (s *Store) noteDamage(err *error) {
	var de *DamagedError
	if s.onDamage != nil && errors.As(*err, &de) {
		s.onDamage(de.ID)
	}
}

// committer takes the first queued operation, then everything queued
// behind it, and commits them in one transaction: the group grows exactly
// as much as the previous fsync made callers wait, with no fixed delay.
func (s *Store) committer() {
	defer close(s.done)
	for first := range s.ops {
		batch := []*op{first}
	drain:
		for len(batch) < s.maxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
	}
}

func (s *Store) commitBatch(batch []*op) {
	for len(batch) > 0 {
		failed := -1
		var opErr error
		start := time.Now()
		err := s.update(func(tx *bbolt.Tx) error {
			for i, o := range batch {
				if err := o.fn(tx); err != nil {
					failed, opErr = i, err
					return err
				}
			}
			if s.faultCommit != nil {
				return s.faultCommit()
			}
			return nil
		})
		if failed >= 0 {
			// One operation failed: it alone gets the error, the rest
			// are retried in a fresh transaction.
			batch[failed].done <- opErr
			batch = append(batch[:failed], batch[failed+1:]...)
			continue
		}
		took := time.Since(start)
		s.health.set(err)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrCommit, err)
		}
		for _, o := range batch {
			o.done <- err // nil, or the commit's own I/O error for all
		}
		if err == nil && s.onCommit != nil {
			s.onCommit(len(batch), took)
		}
		return
	}
}

// ID identifies a message or report: a UUIDv7, so ids sort by time.
type ID = uuid.UUID

// NewID returns a fresh time-ordered id.
func NewID() (ID, error) { return uuid.NewV7() }

// IDTime returns the creation time encoded in a UUIDv7.
func IDTime(id ID) time.Time {
	ms := int64(binary.BigEndian.Uint64(id[:8]) >> 16)
	return time.UnixMilli(ms)
}

// Message status values.
const (
	// StatusReceived: stored as received, not yet processed further.
	StatusReceived = "received"
	// StatusConverted: a report with the same id was stored with it.
	StatusConverted = "converted"
	// StatusQuarantined: kept, but yields no report; Reason says why.
	StatusQuarantined = "quarantined"
)

// Envelope is the SMTP transaction a message arrived in.
type Envelope struct {
	PeerIP   netip.Addr `json:"peer_ip"`
	PeerPort uint16     `json:"peer_port,omitempty"`
	HELO     string     `json:"helo,omitempty"`
	// MailFrom is the reverse-path without angle brackets; "" for <>.
	MailFrom string `json:"mail_from"`
	// Rcpts are the recipients routed to this message's channel only.
	Rcpts      []string  `json:"rcpts"`
	TLS        *TLSState `json:"tls,omitempty"`
	AuthUser   string    `json:"auth_user,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	// Via is "smtp" or "http".
	Via string `json:"via"`
}

// TLSState records the TLS connection a message came over.
type TLSState struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	ServerName  string `json:"server_name,omitempty"`
}

// Message is the record of one message stored for one channel.
type Message struct {
	ID       ID       `json:"id"`
	Channel  string   `json:"channel"`
	Envelope Envelope `json:"envelope"`
	Size     int      `json:"size"`
	Status   string   `json:"status"`
	Reason   string   `json:"reason,omitempty"`
	// Withheld: the body was not stored (its redaction could not be
	// guaranteed); the record keeps the envelope and the reason.
	Withheld bool `json:"withheld,omitempty"`
}

// PutMessages stores each message with its raw bytes in one durable
// transaction: all of them, or none.
func (s *Store) PutMessages(msgs []*Message, raws [][]byte) error {
	if len(msgs) != len(raws) {
		return fmt.Errorf("store: %d messages but %d bodies", len(msgs), len(raws))
	}
	entries := make([]Entry, len(msgs))
	for i := range msgs {
		entries[i] = Entry{Message: msgs[i], Raw: raws[i]}
	}
	return s.Put(entries)
}

// getRecord decodes the record of id; ok is false when there is none.
// Its parts alias bbolt memory, valid only inside tx.
func getRecord(tx *bbolt.Tx, id []byte) (rec record, ok bool, err error) {
	v := tx.Bucket(bucketRecords).Get(id)
	if v == nil {
		return rec, false, nil
	}
	rec, err = decodeRecord(v)
	if err != nil {
		var rid ID
		copy(rid[:], id)
		return rec, false, &DamagedError{ID: rid, Err: err}
	}
	return rec, true, nil
}

func putRecord(tx *bbolt.Tx, id ID, r *record) error {
	b := tx.Bucket(bucketRecords)
	b.FillPercent = appendFill
	if err := b.Put(id[:], r.encode()); err != nil {
		return fmt.Errorf("storing record: %w", err)
	}
	return nil
}

// viewRecord runs fn on the record of id in a read transaction;
// ErrNotFound when there is none. The record aliases bbolt memory, valid
// only inside fn.
func (s *Store) viewRecord(id ID, fn func(*record) error) error {
	return s.view(func(tx *bbolt.Tx) error {
		rec, ok, err := getRecord(tx, id[:])
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		return fn(&rec)
	})
}

// Message returns the record of id.
func (s *Store) Message(id ID) (*Message, error) {
	var m Message
	err := s.viewRecord(id, func(rec *record) error {
		if len(rec.msg) == 0 {
			return ErrNotFound
		}
		return json.Unmarshal(rec.msg, &m)
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// Raw returns a copy of the message bytes of id.
func (s *Store) Raw(id ID) ([]byte, error) {
	var raw []byte
	err := s.viewRecord(id, func(rec *record) error {
		if !rec.hasRaw {
			return ErrNotFound
		}
		raw = append([]byte(nil), rec.raw...)
		return nil
	})
	return raw, err
}

// ForEachMessage calls fn for every message of channel (all channels when
// empty), oldest first, until fn returns an error.
func (s *Store) ForEachMessage(channel string, fn func(*Message) error) error {
	return s.view(func(tx *bbolt.Tx) error {
		visit := func(id []byte) error {
			rec, ok, err := getRecord(tx, id)
			if err != nil {
				return err
			}
			if !ok || len(rec.msg) == 0 {
				return nil // a submitted report without message
			}
			var m Message
			if err := json.Unmarshal(rec.msg, &m); err != nil {
				return fmt.Errorf("decoding message %x: %w", id, err)
			}
			return fn(&m)
		}
		if channel == "" {
			return tx.Bucket(bucketRecords).ForEach(func(k, _ []byte) error { return visit(k) })
		}
		prefix := channelPrefix(channel)
		c := tx.Bucket(bucketByChannel).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if err := visit(k[len(prefix):]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Backup writes a consistent copy of the whole database to w while the
// daemon keeps running (a read transaction; writers are not blocked). The
// copy is a valid bbolt file that xarfd can open as its data_dir's
// xarfd.db. It returns the number of bytes written.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// WriteBackup writes a consistent copy of the database, like Backup, to
// a writer that needs the size first (an HTTP response announces its
// Content-Length): start gets the size of the copy and returns where to
// write it. Size and bytes come from one read transaction, so the size
// is exact however many commits run meanwhile. An error from start is
// returned as is, with nothing written.
func (s *Store) WriteBackup(start func(size int64) (io.Writer, error)) (int64, error) {
	var n int64
	err := s.view(func(tx *bbolt.Tx) error {
		w, err := start(tx.Size())
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// CheckPages opens the database file at path read-only and runs bbolt's
// check of its page structure (every page reachable once, free list
// consistent): enough to trust a backup that just arrived. Check is the
// thorough offline check of a store directory.
func CheckPages(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// Ping returns nil when the database is open for reading, else the error
// a read would get (wrapping ErrDamaged, or one IsClosed knows).
func (s *Store) Ping() error {
	return s.view(func(*bbolt.Tx) error { return nil })
}

// IsClosed reports whether err says the store is closed or closing: a
// write after Close began (ErrClosed) or a read after the file was
// closed. Callers answer "try again later".
func IsClosed(err error) bool {
	return errors.Is(err, ErrClosed) || errors.Is(err, bbolt.ErrDatabaseNotOpen)
}

// Size returns the database size in bytes, as a backup would write it.
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.view(func(tx *bbolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n, err
}

// Count returns the number of stored messages.
func (s *Store) Count() (int, error) {
	n := 0
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			if rec, err := decodeRecord(v); err == nil && len(rec.msg) > 0 {
				n++
			}
			return nil
		})
	})
	return n, err
}
