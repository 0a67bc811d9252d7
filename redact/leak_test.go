package redact

import (
	"fmt"
	"testing"

	"github.com/xarfd/xarfd/internal/leakcheck"
)

// assertNoLeak is the independent leak checker shared with the e2e tests.
func assertNoLeak(tb testing.TB, out []byte, addrs []string) {
	tb.Helper()
	leakcheck.Check(tb, out, addrs)
}

// fakeTB records failures instead of failing the test that uses it.
type fakeTB struct {
	testing.TB
	failed []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.failed = append(f.failed, fmt.Sprintf(format, args...))
}
