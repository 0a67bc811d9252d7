package store

import (
	"errors"
	"testing"
)

// TestCasesCursorMovesWithTheCases: the cursor and the handled reports
// are written with the cases or not at all, so a crash (here: a failed
// transaction) repeats the batch instead of losing or doubling it.
func TestCasesCursorMovesWithTheCases(t *testing.T) {
	s := open(t, t.TempDir())
	all := seedReports(t, s, 6) // newest first
	onlyA := func(r *Report) bool { return r.Channel == "a" }
	reps, last, err := s.ScanReports(ID{}, 2, onlyA)
	if err != nil || len(reps) != 2 || reps[0].ID != all[5-1].ID || len(reps[0].XARF) == 0 {
		t.Fatalf("scan: %v %d", err, len(reps))
	}
	if last != reps[1].ID {
		t.Errorf("last looked at = %s, want %s", last, reps[1].ID)
	}
	boom := errors.New("boom")
	cid, _ := NewID()
	err = s.UpdateCases(last, func(tx *CaseTx) error {
		if err := tx.Put(&Case{ID: cid, Key: "ip:192.0.2.1", State: CaseOpen}); err != nil {
			return err
		}
		if err := tx.Handled(reps[0].ID, cid); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if c, _ := s.CasesCursor(); c != (ID{}) {
		t.Fatal("cursor moved by a failed transaction")
	}
	if _, err := s.GetCase(cid); !errors.Is(err, ErrNotFound) {
		t.Fatal("case of a failed transaction stored")
	}
	err = s.UpdateCases(last, func(tx *CaseTx) error {
		if err := tx.Put(&Case{ID: cid, Key: "ip:192.0.2.1", State: CaseOpen}); err != nil {
			return err
		}
		return tx.Handled(reps[0].ID, cid)
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := s.CasesCursor(); c != last {
		t.Fatal("cursor not moved")
	}
	if n, _ := s.ActiveCaseCount(); n != 1 {
		t.Errorf("active count %d, want 1", n)
	}
	// Scanning again from before the cursor skips the handled report.
	again, _, _ := s.ScanReports(ID{}, 10, onlyA)
	for _, r := range again {
		if r.ID == reps[0].ID {
			t.Error("handled report returned again")
		}
	}
	if len(again) != 2 {
		t.Errorf("%d unhandled reports of channel a, want 2", len(again))
	}
	// The open index and the active index follow the state.
	s.UpdateCase(cid, func(c *Case) error { c.State = CaseResolved; return nil })
	if act, _ := s.ActiveCases(); len(act) != 0 {
		t.Errorf("resolved case still active: %d", len(act))
	}
	if n, _ := s.ActiveCaseCount(); n != 0 {
		t.Errorf("active count %d", n)
	}
	s.UpdateCases(ID{}, func(tx *CaseTx) error {
		if c, _ := tx.Open("ip:192.0.2.1"); c != nil {
			t.Error("resolved case still open for its key")
		}
		return nil
	})
}
