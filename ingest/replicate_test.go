package ingest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/xarfd/xarfd/store"
)

// replicator stands in for a cluster node: it fails, or stores through
// PutNew as the node does after the stream's acknowledgement.
type replicator struct {
	st      *store.Store
	fail    bool
	records [][]store.Entry
}

func (r *replicator) Commit(entries []store.Entry) ([]bool, error) {
	if r.fail {
		return nil, fmt.Errorf("publishing: %w", store.ErrCommit)
	}
	r.records = append(r.records, entries)
	return r.st.PutNew(entries)
}

func TestReplicatorDecidesTheAnswer(t *testing.T) {
	cfg, st, _ := setup(t, "")
	var reports []store.ID
	rep := &replicator{st: st, fail: true}
	in, err := New(cfg, st, Options{Replicator: rep, OnReport: func(r *store.Report) { reports = append(reports, r.ID) }})
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("From: a@origin.example\r\nTo: x@trap.test.example\r\nSubject: s\r\n\r\nspam\r\n")
	d := []Delivery{{Channel: cfg.Channel("trap"), Rcpts: []string{"x@trap.test.example"}},
		{Channel: cfg.Channel("fbl"), Rcpts: []string{"fbl@test.example"}}}

	// Not acknowledged: an error the API answers 503 and smtpd 451,
	// and nothing stored on this node.
	if res, err := in.Accept(env(), d, raw); err == nil || !errors.Is(err, store.ErrCommit) {
		t.Fatalf("Accept with a failing publish = %+v, %v", res, err)
	}
	if n, _ := st.Count(); n != 0 || len(reports) != 0 {
		t.Fatalf("after a failed publish: %d stored, %d reports announced", n, len(reports))
	}

	// Acknowledged: one record for both deliveries, stored locally,
	// each report announced once.
	rep.fail = false
	res, err := in.Accept(env(), d, raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.records) != 1 || len(rep.records[0]) != 2 {
		t.Fatalf("published %d records, want one of 2 entries", len(rep.records))
	}
	if _, err := st.Message(res[1].ID); err != nil {
		t.Errorf("not stored locally: %v", err)
	}
	if len(reports) != 1 || reports[0] != res[0].ID {
		t.Errorf("reports announced = %v, want the trap report %s", reports, res[0].ID)
	}
	// The consumer's delivery of the same record changes nothing and
	// announces nothing: the accepting node applied it already.
	if stored, err := st.PutNew(rep.records[0]); err != nil || stored[0] || stored[1] {
		t.Errorf("re-apply = %v, %v", stored, err)
	}
}

// TestNotSpamCarriesItsRetraction: the record a not-spam report
// publishes says what it withdrew, so that every node of a cluster
// withdraws the same complaint.
func TestNotSpamCarriesItsRetraction(t *testing.T) {
	cfg, st, _ := setup(t, "")
	rep := &replicator{st: st}
	in, err := New(cfg, st, Options{Replicator: rep})
	if err != nil {
		t.Fatal(err)
	}
	c := acceptFBL(t, in, "fbl", feedbackFixture(t, "abuse.eml"))
	r := acceptFBL(t, in, "fbl", feedbackFixture(t, "not-spam.eml"))
	if len(rep.records) != 2 || rep.records[0][0].Retract != nil {
		t.Fatalf("records = %+v", rep.records)
	}
	got := rep.records[1][0].Retract
	if got == nil || got.ID != r.ID || got.Channel != "fbl" || got.MessageID == "" {
		t.Errorf("retraction published = %+v (complaint %s)", got, c.ID)
	}
}
