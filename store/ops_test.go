package store

import (
	"testing"
	"time"
)

func TestOpMarks(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ok, err := s.OpApplied("a"); err != nil || ok {
		t.Fatalf("fresh store: %v %v", ok, err)
	}
	t0 := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	if err := s.MarkOp("a", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkOp("b", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.OpApplied("a"); err != nil || !ok {
		t.Fatalf("after MarkOp: %v %v", ok, err)
	}
	if err := s.MarkOp("", t0); err == nil {
		t.Error("an empty id is marked")
	}
	n, err := s.PruneOps(t0.Add(time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PruneOps = %d, %v; want 1", n, err)
	}
	if ok, _ := s.OpApplied("a"); ok {
		t.Error("a pruned mark is still there")
	}
	if ok, _ := s.OpApplied("b"); !ok {
		t.Error("a newer mark was pruned")
	}
}
