package store

import (
	"errors"
	"fmt"
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

// TestCasesPages: following next_cursor from page to page yields every
// case the filters select, newest first, each once, and ends with a
// zero cursor; a bound on the cases read per call gives short or empty
// pages with a cursor, never a gap.
func TestCasesPages(t *testing.T) {
	s := open(t, t.TempDir())
	states := []string{CaseOpen, CaseResolved, CaseNotified, CaseResolved, CaseRestricted, CaseResolved, CaseOpen}
	err := s.UpdateCases(ID{}, func(tx *CaseTx) error {
		for i := range 23 {
			id, err := NewID()
			if err != nil {
				return err
			}
			sub := []string{"alice", "bob", "carol"}[i%3]
			if err := tx.Put(&Case{ID: id, Key: fmt.Sprintf("subscriber:%s-%d", sub, i), SubscriberID: sub, State: states[i%len(states)]}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// What ForEachCase sees is the reference.
	want := func(q CaseQuery) []ID {
		var ids []ID
		s.ForEachCase(func(c *Case) error {
			if (q.State == "" || c.State == q.State) && (q.Subscriber == "" || c.SubscriberID == q.Subscriber) {
				ids = append(ids, c.ID)
			}
			return nil
		})
		return ids
	}
	for _, q := range []CaseQuery{
		{Limit: 5},
		{Limit: 1000},
		{State: CaseResolved, Limit: 2},
		{Subscriber: "bob", Limit: 3},
		{State: CaseOpen, Subscriber: "alice", Limit: 1},
		{State: CaseResolved, Limit: 2, Examine: 3},
		{State: CaseRestricted, Limit: 1, Examine: 1},
		{State: "no-such-state", Limit: 4, Examine: 5},
	} {
		exp := want(q)
		var got []ID
		pages := 0
		for cur := q; ; pages++ {
			if pages > 100 {
				t.Fatalf("%+v: the cursor does not end", q)
			}
			page, next, err := s.Cases(cur)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > q.Limit {
				t.Fatalf("%+v: a page of %d", q, len(page))
			}
			for _, c := range page {
				if (q.State != "" && c.State != q.State) || (q.Subscriber != "" && c.SubscriberID != q.Subscriber) {
					t.Errorf("%+v: case %s (%s, %s) does not match", q, c.ID, c.State, c.SubscriberID)
				}
				got = append(got, c.ID)
			}
			if next == (ID{}) {
				break
			}
			cur.Before = next
		}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("%+v: paged through %d cases in %d pages:\n got %v\nwant %v", q, len(got), pages+1, got, exp)
		}
		if q.Examine == 0 && len(exp) > 0 && pages != (len(exp)-1)/q.Limit {
			t.Errorf("%+v: %d pages for %d cases", q, pages+1, len(exp))
		}
	}
	// An empty store, and a cursor past the oldest case.
	empty := open(t, t.TempDir())
	if page, next, err := empty.Cases(CaseQuery{}); err != nil || len(page) != 0 || next != (ID{}) {
		t.Errorf("empty store: %v %v %v", page, next, err)
	}
	all := want(CaseQuery{})
	if page, next, err := s.Cases(CaseQuery{Before: all[len(all)-1]}); err != nil || len(page) != 0 || next != (ID{}) {
		t.Errorf("below the oldest: %v %v %v", page, next, err)
	}
}
