package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// A backup that fails in any way leaves the previous file in place and
// no temporary file behind.
func TestBackupFailuresKeepThePreviousFile(t *testing.T) {
	good := boltFile(t)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100000")
			w.Write(good[:5000])
			panic(http.ErrAbortHandler)
		}, "backup"},
		{"not a database", func(w http.ResponseWriter, r *http.Request) {
			w.Write(bytes.Repeat([]byte("x"), 65536))
		}, "damaged"},
		{"refused", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"forbidden"}`, http.StatusForbidden)
		}, "403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			dir := t.TempDir()
			out := filepath.Join(dir, "b.db")
			os.WriteFile(out, []byte("previous"), 0o600)
			_, err := backupTo(srv.Client(), srv.URL, "tok", out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
			if b, _ := os.ReadFile(out); string(b) != "previous" {
				t.Fatalf("the previous backup was replaced")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Fatalf("left behind: %v", entries)
			}
		})
	}
}

func TestBackupWritesTheDatabase(t *testing.T) {
	good := boltFile(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write(good)
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "b.db")
	n, err := backupTo(srv.Client(), srv.URL, "tok", out)
	if err != nil || n != int64(len(good)) {
		t.Fatalf("backup: %d bytes, %v", n, err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, good) {
		t.Fatal("the backup differs from what was served")
	}
}

// boltFile is a small valid database's bytes.
func boltFile(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), bytes.Repeat([]byte("v"), 20000))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
