package lograte

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(time.Minute, func() time.Time { return now })
	if ok, n := l.Allow("commit"); !ok || n != 0 {
		t.Fatalf("first event: %v, %d", ok, n)
	}
	for i := range 99 {
		if ok, _ := l.Allow("commit"); ok {
			t.Fatalf("repeat %d within the minute let through", i)
		}
	}
	// Another kind is not held back by the first.
	if ok, _ := l.Allow("other"); !ok {
		t.Error("the first event of another key was suppressed")
	}
	now = now.Add(time.Minute)
	if ok, n := l.Allow("commit"); !ok || n != 99 {
		t.Errorf("after the minute: %v, %d; want true, 99", ok, n)
	}
	if ok, _ := l.Allow("commit"); ok {
		t.Error("the interval did not start again")
	}
}

func TestLimiterBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New(time.Minute, func() time.Time { return now })
	for i := range 3 * maxKeys {
		l.Allow(fmt.Sprint(i))
		if i%maxKeys == 0 {
			now = now.Add(time.Minute)
		}
	}
	if len(l.keys) > maxKeys+1 {
		t.Errorf("%d keys remembered, want at most %d", len(l.keys), maxKeys+1)
	}
}
