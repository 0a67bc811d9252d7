package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"go.etcd.io/bbolt"
)

// baseline stores messages the way the prototype in the store's design
// did: raw bytes in one bucket under a UUIDv7 key, committed by one
// goroutine that takes everything queued while its previous commit ran.
// Its bbolt options are the store's, so that the gap between this server
// and xarfd is what xarfd does besides storing (checks, parsing, records,
// indexes, logs), not the disk.
type baseline struct {
	db   *bbolt.DB
	ops  chan baselineOp
	stop chan struct{} // closed by close
	done chan struct{} // closed when the committer has returned
}

type baselineOp struct {
	key, value []byte
	result     chan error
}

var baselineBucket = []byte("messages")

// openBaseline creates path, which must not exist: the figures are those
// of a store that starts empty, as bench-smtp's xarfd does, and a wrong
// path must not cost anyone their file.
func openBaseline(path string) (*baseline, error) {
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		if err == nil {
			err = errors.New("exists; the baseline starts from a new file")
		}
		return nil, fmt.Errorf("-bbolt-file %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket(baselineBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, err
	}
	b := &baseline{db: db, ops: make(chan baselineOp, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	go b.commit()
	return b, nil
}

func (b *baseline) commit() {
	defer close(b.done)
	for {
		var batch []baselineOp
		select {
		case op := <-b.ops:
			batch = append(batch, op)
		case <-b.stop:
			return
		}
	queued:
		for {
			select {
			case op := <-b.ops:
				batch = append(batch, op)
			default:
				break queued
			}
		}
		err := b.db.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(baselineBucket)
			bk.FillPercent = 1
			for _, op := range batch {
				if err := bk.Put(op.key, op.value); err != nil {
					return err
				}
			}
			return nil
		})
		for _, op := range batch {
			op.result <- err
		}
	}
}

// close stops the committer after its current commit and closes the
// file; a session still waiting is told to try again.
func (b *baseline) close() error {
	close(b.stop)
	<-b.done
	return b.db.Close()
}

// store queues value and waits for its commit.
func (b *baseline) store(key, value []byte) error {
	op := baselineOp{key: key, value: value, result: make(chan error, 1)}
	select {
	case b.ops <- op:
	case <-b.stop:
		return errors.New("closing")
	}
	select {
	case err := <-op.result:
		return err
	case <-b.done:
		// The committer answers every op of a batch before it returns.
		select {
		case err := <-op.result:
			return err
		default:
			return errors.New("closed before the commit")
		}
	}
}

func (b *baseline) session() smtp.Session { return baselineSession{b} }

type baselineSession struct{ b *baseline }

func (baselineSession) Reset()                               { /* nothing kept between messages */ }
func (baselineSession) Logout() error                        { return nil }
func (baselineSession) Mail(string, *smtp.MailOptions) error { return nil }
func (baselineSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s baselineSession) Data(r io.Reader) error {
	var body bytes.Buffer
	if _, err := io.Copy(&body, r); err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if err := s.b.store(id[:], body.Bytes()); err != nil {
		fmt.Fprintln(os.Stderr, "xarfd-load: commit:", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Not stored, try again later"}
	}
	return nil
}
