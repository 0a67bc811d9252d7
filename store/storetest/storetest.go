// Package storetest opens stores for the tests of other packages.
package storetest

import (
	"testing"

	"github.com/xarfd/xarfd/store"
)

// Open opens the store in dir, failing t when it cannot, and closes it
// when t ends.
func Open(t testing.TB, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
