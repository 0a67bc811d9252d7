package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
)

// CheckReport is what Check found.
type CheckReport struct {
	Path string
	// Records is how many records were read and verified.
	Records int
	// Problems lists what is damaged, one finding per entry; each names
	// the page, bucket or record id, never the record's contents.
	Problems []string
}

// maxProblems caps the findings one run lists: past it the file is
// beyond repair by hand anyway, and the list would only bury the first.
const maxProblems = 1000

func (c *CheckReport) add(format string, a ...any) {
	if len(c.Problems) == maxProblems {
		c.Problems = append(c.Problems, "(further problems not listed)")
	}
	if len(c.Problems) > maxProblems {
		return
	}
	c.Problems = append(c.Problems, fmt.Sprintf(format, a...))
}

// Check verifies the store in dir offline: the file's header and size,
// bbolt's own consistency check of every page (Tx.Check), every record's
// checksum and decoding, and that the channel and source indexes point
// at records that exist. It opens the file read-only and never writes.
// A store that a running xarfd holds is refused with ErrInUse (after
// lockTimeout): checking a live file would race with its writer.
//
// The error is for what kept Check from checking (no file, in use, a
// schema it does not read); damage is reported in Problems.
func Check(dir string, lockTimeout time.Duration) (rep *CheckReport, err error) {
	path := filepath.Join(dir, FileName)
	rep = &CheckReport{Path: path}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("checking %s: %w", path, err)
	}
	if err := checkFile(path); err != nil {
		if !errors.Is(err, ErrDamaged) {
			return nil, err
		}
		rep.add("file: %v", err)
		return rep, nil
	}
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("checking %s: %w; stop xarfd first", path, ErrInUse)
	}
	if err != nil {
		rep.add("file: bbolt cannot open it: %v", err)
		return rep, nil
	}
	defer db.Close()
	err = func() (err error) {
		defer guardFault(&err)()
		defer func() {
			// bbolt panics on pages that make no sense; that is
			// damage to report, not a crash of the checker.
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: reading the file panicked: %v", ErrDamaged, r)
			}
		}()
		return db.View(func(tx *bbolt.Tx) error { return checkTx(tx, rep) })
	}()
	if errors.Is(err, ErrDamaged) {
		rep.add("file: %v", err)
		return rep, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", path, err)
	}
	return rep, nil
}

func checkTx(tx *bbolt.Tx, rep *CheckReport) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		rep.add("bucket meta: missing (not an xarfd database?)")
		return nil
	}
	v := meta.Get(keySchema)
	if len(v) != 8 {
		rep.add("bucket meta: schema version is %d bytes long, want 8", len(v))
		return nil
	}
	if have := binary.BigEndian.Uint64(v); have != SchemaVersion {
		return fmt.Errorf("schema version %d, this xarfd checks %d: start xarfd once to migrate it (or use the matching xarfd)", have, SchemaVersion)
	}
	for _, b := range [][]byte{bucketRecords, bucketByChannel, bucketByIP, bucketQuarantine, bucketOutbox, bucketOutboxAttempts} {
		if tx.Bucket(b) == nil {
			rep.add("bucket %s: missing", b)
		}
	}
	if len(rep.Problems) > 0 {
		return nil
	}

	// Records first: their walk runs in this goroutine, where a panic on
	// a garbage page is caught; Tx.Check runs its own.
	records := tx.Bucket(bucketRecords)
	err := records.ForEach(func(k, v []byte) error {
		rep.Records++
		if len(k) != 16 {
			rep.add("record key %x: not an id", k)
			return nil
		}
		var id ID
		copy(id[:], k)
		rec, err := decodeRecord(v)
		if err != nil {
			rep.add("record %s: %v", id, err)
			return nil
		}
		var m Message
		switch {
		case len(rec.msg) > 0 && json.Unmarshal(rec.msg, &m) != nil:
			rep.add("record %s: the message record is not valid JSON", id)
		case len(rec.msg) > 0 && !m.Withheld && !rec.hasRaw:
			rep.add("record %s: the message body is missing", id)
		case len(rec.rep) > 0 && !json.Valid(rec.rep):
			rep.add("record %s: the report is not valid JSON", id)
		case len(rec.xarf) > 0 && !json.Valid(rec.document()):
			rep.add("record %s: the XARF document is not valid JSON", id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// An index key without record is damage, unless Recover moved that
	// record to the quarantine (then the key stays behind on purpose).
	quarantine := tx.Bucket(bucketQuarantine)
	dangling := func(index string, key, id []byte) {
		if records.Get(id) != nil {
			return
		}
		var rid ID
		copy(rid[:], id)
		if quarantine.Get([]byte(rid.String())) != nil {
			return
		}
		rep.add("index %s: key %x points at record %s, which does not exist", index, key, rid)
	}
	err = tx.Bucket(bucketByChannel).ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, 0)
		if i <= 0 || len(k)-i-1 != 16 {
			rep.add("index by_channel: malformed key %x", k)
			return nil
		}
		dangling("by_channel", k, k[i+1:])
		return nil
	})
	if err != nil {
		return err
	}
	err = tx.Bucket(bucketByIP).ForEach(func(k, _ []byte) error {
		if len(k) != 32 {
			rep.add("index by_ip: malformed key %x", k)
			return nil
		}
		dangling("by_ip", k, k[16:])
		return nil
	})
	if err != nil {
		return err
	}
	if err := checkAttempts(tx, rep); err != nil {
		return err
	}
	if err := checkStats(tx, rep); err != nil {
		return err
	}
	for err := range tx.Check() {
		rep.add("bbolt: %v", err)
	}
	return nil
}
