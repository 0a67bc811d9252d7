package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// seeded writes a store of n messages with reports whose bodies carry a
// unique marker, closes it and returns the ids, the markers and the
// file's path.
func seeded(t testing.TB, dir string, n int) (ids []ID, markers []string, path string) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		m := msg(t, "trap")
		marker := "MARKER-" + m.ID.String()
		raw := []byte("Subject: x\r\n\r\n" + marker + strings.Repeat(" padding", 100))
		r := &Report{ID: m.ID, Channel: "trap", Via: "smtp", XARF: json.RawMessage(`{"n":1}`)}
		if err := s.Put([]Entry{{Message: m, Raw: raw, Report: r}}); err != nil {
			t.Fatal(err)
		}
		ids, markers = append(ids, m.ID), append(markers, marker)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return ids, markers, filepath.Join(dir, FileName)
}

// flipIn flips one byte of every occurrence of marker in the file (the
// live record, and stale copies in freed pages that bbolt's
// copy-on-write leaves behind).
func flipIn(t *testing.T, path, marker string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(marker)) {
		t.Fatalf("%s not found in %s", marker, path)
	}
	b = bytes.ReplaceAll(b, []byte(marker), []byte(strings.ToLower(marker[:3])+marker[3:]))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantRefused opens dir and wants an error wrapping ErrDamaged that
// names the file and says how to restore; the file must be untouched.
func wantRefused(t *testing.T, dir, path string) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a damaged file")
	}
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "restore the last backup") {
		t.Errorf("error %q: want ErrDamaged naming %s and the restore hint", err, path)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("Open changed the damaged file")
	}
}

func TestOpenRefusesEmptyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, dir, path)
}

func TestOpenRefusesTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	_, _, path := seeded(t, dir, 200)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Any cut that keeps the meta pages: a whole number of pages, and
	// one that is not.
	for _, size := range []int64{fi.Size() / 2, fi.Size()/2 + 123, 4 * 4096} {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, dir, path)
	}
}

func TestOpenRefusesForeignFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, dir, path)
}

// Both meta pages zeroed: bbolt has no header left to trust.
func TestOpenRefusesZeroedHeader(t *testing.T) {
	dir := t.TempDir()
	_, _, path := seeded(t, dir, 5)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 2*4096), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	wantRefused(t, dir, path)
}

func TestOpenAcceptsGoodFile(t *testing.T) {
	dir := t.TempDir()
	ids, _, _ := seeded(t, dir, 3)
	s := open(t, dir)
	if _, err := s.Raw(ids[2]); err != nil {
		t.Fatal(err)
	}
}

// A flipped byte in a stored message is reported on every read path,
// with the id, and its bytes are never returned.
func TestDamagedRecordIsNeverServed(t *testing.T) {
	dir := t.TempDir()
	ids, markers, path := seeded(t, dir, 3)
	flipIn(t, path, markers[1])
	var (
		mu   sync.Mutex
		seen []ID
	)
	s, err := Open(dir, Options{OnDamage: func(id ID) {
		mu.Lock()
		seen = append(seen, id)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, read := range map[string]func() error{
		"Raw":           func() error { _, err := s.Raw(ids[1]); return err },
		"Message":       func() error { _, err := s.Message(ids[1]); return err },
		"GetReport":     func() error { _, err := s.GetReport(ids[1]); return err },
		"GetReportMeta": func() error { _, err := s.GetReportMeta(ids[1]); return err },
		"Reports":       func() error { _, _, err := s.Reports(Query{}); return err },
	} {
		err := read()
		var de *DamagedError
		if !errors.Is(err, ErrDamaged) || !errors.As(err, &de) || de.ID != ids[1] {
			t.Errorf("%s: %v, want a DamagedError for %s", name, err, ids[1])
		}
	}
	mu.Lock()
	if len(seen) != 5 || seen[0] != ids[1] {
		t.Errorf("OnDamage saw %v, want %s five times", seen, ids[1])
	}
	mu.Unlock()
	// The records around it are fine.
	for _, i := range []int{0, 2} {
		if _, err := s.Raw(ids[i]); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
	}
	// Recover leaves it where it is (and reports it), so that the API
	// keeps saying it is damaged rather than that it never existed.
	if n, err := s.Recover(); n != 0 || err != nil {
		t.Errorf("Recover = %d, %v", n, err)
	}
	if _, err := s.Raw(ids[1]); !errors.Is(err, ErrDamaged) {
		t.Errorf("after Recover: %v", err)
	}
}

// The file shrinking under a running store (another process, a failing
// disk) costs an error, not the process: without the fault guard the
// read below dies of SIGBUS.
func TestTruncatedUnderRunningStore(t *testing.T) {
	dir := t.TempDir()
	ids, _, path := seeded(t, dir, 300)
	s := open(t, dir)
	if err := os.Truncate(path, 4*4096); err != nil {
		t.Fatal(err)
	}
	_, err := s.Raw(ids[len(ids)-1])
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("read past the end of the file: %v, want ErrDamaged", err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	ids, markers, path := seeded(t, dir, 50)
	rep, err := Check(dir, time.Second)
	if err != nil || len(rep.Problems) != 0 || rep.Records != 50 {
		t.Fatalf("clean store: %+v, %v", rep, err)
	}
	flipIn(t, path, markers[7])
	rep, err = Check(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], ids[7].String()) || !strings.Contains(rep.Problems[0], "checksum") {
		t.Errorf("one flipped byte: %q", rep.Problems)
	}
}

func TestCheckFindsDanglingIndex(t *testing.T) {
	dir := t.TempDir()
	ids, _, _ := seeded(t, dir, 3)
	s := open(t, dir)
	err := s.Commit(func(tx *bbolt.Tx) error { return tx.Bucket(bucketRecords).Delete(ids[0][:]) })
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	rep, err := Check(dir, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "by_channel") || !strings.Contains(rep.Problems[0], ids[0].String()) {
		t.Errorf("record deleted under its index: %q", rep.Problems)
	}
}

func TestCheckRefusesStoreInUse(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if _, err := Check(dir, 100*time.Millisecond); !errors.Is(err, ErrInUse) {
		t.Fatalf("Check of an open store: %v, want ErrInUse", err)
	}
}

func TestCheckDamagedFile(t *testing.T) {
	for name, damage := range map[string]func(path string) error{
		"empty":     func(p string) error { return os.Truncate(p, 0) },
		"truncated": func(p string) error { return os.Truncate(p, 5*4096) },
		"zeroed":    func(p string) error { return os.WriteFile(p, make([]byte, 64<<10), 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, _, path := seeded(t, dir, 200)
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			rep, err := Check(dir, time.Second)
			if err != nil || len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], path) {
				t.Errorf("%+v, %v: want a problem naming %s", rep, err, path)
			}
		})
	}
}

// checkFile reads a file's header, which may be anything: it never
// panics, and what it accepts holds the pages its header claims.
func FuzzCheckFile(f *testing.F) {
	dir := f.TempDir()
	_, _, path := seeded(f, dir, 0)
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good[:16<<10])
	f.Add(good)
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xed, 0xda, 0x0c, 0xed}, 2048))
	f.Fuzz(func(t *testing.T, b []byte) {
		// One file per fuzzing process (each runs this function and
		// has its own dir), rewritten per input.
		p := filepath.Join(dir, "fuzz.db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		err := checkFile(p)
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatalf("not a damage error: %v", err)
		}
		if err == nil {
			m, ok := parseBoltMeta(b)
			if ok && int64(len(b)) < int64(m.pgid)*int64(m.pageSize) {
				t.Fatalf("accepted %d bytes whose meta 0 claims %d pages of %d", len(b), m.pgid, m.pageSize)
			}
		}
	})
}

// Another program's bbolt database is refused and left as it was, not
// given xarfd's buckets.
func TestOpenRefusesForeignBolt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("someone-elses"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open accepted another program's database")
	} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not an xarfd database") {
		t.Errorf("error %q", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("Open changed another program's database")
	}
}
