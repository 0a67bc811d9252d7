package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// ErrDamaged is wrapped by every error about a database file or record
// that is not what xarfd wrote: a file that is empty, truncated or not a
// bbolt database, or a record whose checksum does not hold. The remedy
// is the same for all of them: stop, keep the file aside, restore the
// last backup (docs/operations.md, "A damaged store: how to restore").
var ErrDamaged = errors.New("store is damaged")

// RestoreHint ends every error about a damaged file: what the operator
// does next. It names no path (the error names the file before it).
const RestoreHint = "keep the damaged file aside and restore the last backup " +
	"(docs/operations.md, \"A damaged store: how to restore\"); xarfd never replaces an existing file"

// bbolt's on-disk meta page, as written by go.etcd.io/bbolt v1.4
// (internal/common/meta.go and page.go): a 16-byte page header, then
// magic, version, page size, flags (4 bytes each), the root bucket (root
// page id and sequence, 8 bytes each), the freelist page id, the
// high-water mark (pgid: pages in use), the transaction id and an FNV-64a
// checksum of the fields before it. Numbers are in the machine's byte
// order (bbolt files are not portable across endianness either).
const (
	boltPageHeader  = 16
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltMetaSumLen  = 56 // bytes of meta covered by the checksum
	boltMetaLen     = boltMetaSumLen + 8
	boltMinPageSize = 512
	boltMaxPageSize = 1 << 24
)

// boltMeta is what checkFile needs of one meta page.
type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// parseBoltMeta decodes the meta page at the start of p; ok is false when
// its magic, version or checksum does not hold.
func parseBoltMeta(p []byte) (m boltMeta, ok bool) {
	if len(p) < boltPageHeader+boltMetaLen {
		return m, false
	}
	b := p[boltPageHeader : boltPageHeader+boltMetaLen]
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion {
		return m, false
	}
	h := fnv.New64a()
	h.Write(b[:boltMetaSumLen])
	if h.Sum64() != ne.Uint64(b[boltMetaSumLen:]) {
		return m, false
	}
	m.pageSize = ne.Uint32(b[8:])
	m.pgid = ne.Uint64(b[40:])
	m.txid = ne.Uint64(b[48:])
	if m.pageSize < boltMinPageSize || m.pageSize > boltMaxPageSize || m.pageSize&(m.pageSize-1) != 0 || m.pgid < 4 {
		return m, false
	}
	return m, true
}

// checkFile refuses a database file that bbolt would open wrongly: empty
// (bbolt would silently start a new database in it), not a bbolt file
// (no valid meta page), or shorter than the pages its meta says are in use
// (bbolt maps the missing tail and the first read of it kills the process
// with SIGBUS). A missing file is fine: it is a new store. It costs three
// small reads, whatever the size of the store.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	damaged := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s; %s", path, ErrDamaged, fmt.Sprintf(format, a...), RestoreHint)
	}
	if !fi.Mode().IsRegular() {
		return damaged("not a regular file")
	}
	size := fi.Size()
	if size == 0 {
		return damaged("the file is empty (0 bytes), an xarfd database never is")
	}
	// Meta page 0 starts the file; meta page 1 starts the second page,
	// whose size meta 0 gives, or when meta 0 is torn, one of the sizes
	// bbolt allows.
	buf := make([]byte, boltPageHeader+boltMetaLen)
	var metas []boltMeta
	if n, _ := f.ReadAt(buf, 0); n == len(buf) {
		if m, ok := parseBoltMeta(buf); ok {
			metas = append(metas, m)
		}
	}
	for ps := int64(boltMinPageSize); ps <= boltMaxPageSize && ps+int64(len(buf)) <= size; ps <<= 1 {
		if len(metas) == 1 && int64(metas[0].pageSize) != ps {
			continue
		}
		if n, err := f.ReadAt(buf, ps); n < len(buf) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if m, ok := parseBoltMeta(buf); ok && int64(m.pageSize) == ps {
			metas = append(metas, m)
			break
		}
	}
	if len(metas) == 0 {
		return damaged("not a bbolt database, or both of its meta pages are damaged")
	}
	// bbolt uses the valid meta with the higher transaction id; the
	// other one is its fallback, so the file must hold the pages of both.
	var need int64
	for _, m := range metas {
		if n := int64(m.pgid) * int64(m.pageSize); n > need {
			need = n
		}
	}
	if size < need {
		return damaged("the file is %d bytes but its header says %d are in use: it was truncated", size, need)
	}
	return nil
}

// guardFault makes a fault on the memory map (SIGBUS: the file shrank
// under bbolt, or the disk returned an error for a mapped page) panic in
// the calling goroutine instead of killing the process, and turns that
// panic into an error wrapping ErrDamaged. Use as
//
//	defer guardFault(&err)()
//
// around code that reads bbolt memory. debug.SetPanicOnFault is per
// goroutine and cheap (it sets a flag on the goroutine); the previous
// setting is restored.
func guardFault(err *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok && isFault(re) {
				*err = fmt.Errorf("%w: reading the database file faulted (%v); %s", ErrDamaged, re, RestoreHint)
				return
			}
			panic(r)
		}
	}
}

// isFault reports whether a runtime error is a memory fault (the ones
// SetPanicOnFault turns into panics carry the faulting address).
func isFault(e runtime.Error) bool {
	_, ok := e.(interface{ Addr() uintptr })
	return ok
}
