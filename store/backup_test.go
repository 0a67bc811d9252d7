package store

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// WriteBackup announces the size of exactly the bytes it writes, writes
// nothing when start refuses, and the copy passes CheckPages.
func TestWriteBackup(t *testing.T) {
	s := open(t, t.TempDir())
	var buf bytes.Buffer
	var announced int64
	n, err := s.WriteBackup(func(size int64) (io.Writer, error) {
		announced = size
		return &buf, nil
	})
	if err != nil || n != announced || int64(buf.Len()) != announced || n == 0 {
		t.Fatalf("WriteBackup = %d, %v; announced %d, wrote %d", n, err, announced, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckPages(path); err != nil {
		t.Errorf("CheckPages of a good copy: %v", err)
	}
	if err := os.WriteFile(path, buf.Bytes()[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckPages(path); err == nil {
		t.Error("CheckPages of a truncated copy passed")
	}

	refused := errors.New("no")
	buf.Reset()
	if n, err := s.WriteBackup(func(int64) (io.Writer, error) { return &buf, refused }); !errors.Is(err, refused) || n != 0 || buf.Len() != 0 {
		t.Errorf("refused start: %d, %v, wrote %d", n, err, buf.Len())
	}
}

// Ping fails once the store is closed, with an error IsClosed knows.
func TestPingClosed(t *testing.T) {
	s := open(t, t.TempDir())
	if err := s.Ping(); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(); err == nil || !IsClosed(err) {
		t.Errorf("Ping after Close = %v, want an error IsClosed knows", err)
	}
	if IsClosed(errors.New("disk full")) {
		t.Error("IsClosed of another error")
	}
}
