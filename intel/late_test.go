package intel

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/store"
)

// A trap message quarantined two hours ago (by an older parser, say),
// already passed by the miner as a message without report, and
// reprocessed now: its report keeps the old id, far behind the cursor
// and its look-back, and is mined all the same, once.
func TestReprocessedReportIsMined(t *testing.T) {
	text := strings.Replace(serviceConfig, "  - name: quiet",
		"  - {name: plain, kind: trap, addresses: [\"*@plain.catchall-mail.com\"], uses: [store, intel]}\n  - name: quiet", 1)
	cfg, err := config.Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in, err := ingest.New(cfg, st, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{cfg: cfg, st: st, in: in, clk: &clock{t: time.Now()}}
	s := r.service(t)

	old, _ := store.NewID()
	ms := uint64(time.Now().Add(-2 * time.Hour).UnixMilli())
	for i := 0; i < 6; i++ {
		old[i] = byte(ms >> (40 - 8*i))
	}
	raw := []byte(strings.ReplaceAll(trapMail, "honey.", "plain."))
	m := &store.Message{ID: old, Channel: "plain", Size: len(raw), Status: store.StatusQuarantined, Reason: "an older parser",
		Envelope: store.Envelope{PeerIP: netip.MustParseAddr("45.142.120.11"), PeerPort: 40000, MailFrom: "bounce@spam-domain.biz",
			Via: "smtp", Rcpts: []string{"victim@plain.catchall-mail.com"}}}
	if err := st.Put([]store.Entry{{Message: m, Raw: raw}}); err != nil {
		t.Fatal(err)
	}
	if n := mine(t, s); n != 1 {
		t.Fatalf("first pass took %d", n)
	}
	r.deliver(t, "trap", "victim@honey.catchall-mail.com", "45.142.120.12") // moves the cursor to now
	mine(t, s)
	if _, err := st.IntelGet(string(KindIP), "45.142.120.11"); err != store.ErrNotFound {
		t.Fatalf("a quarantined message was mined: %v", err)
	}

	res, err := in.Reprocess(old)
	if err != nil || !res.Report {
		t.Fatalf("reprocess: %+v %v", res, err)
	}
	if n := mine(t, s); n != 1 {
		t.Fatalf("the pass after the reprocess took %d reports", n)
	}
	ind, err := st.IntelGet(string(KindIP), "45.142.120.11")
	if err != nil || ind.Total != 1 || ind.Hits[0].Report != old || !ind.Hits[0].Time.Equal(store.IDTime(old)) {
		t.Fatalf("the reprocessed report's origin: %+v %v", ind, err)
	}
	if _, ok := s.Lookup(KindIP, "45.142.120.11"); !ok {
		t.Error("not listed")
	}
	// Once: the queue is drained, and later passes find nothing more.
	if ids, _ := st.IntelLate(10); len(ids) != 0 {
		t.Errorf("late queue: %v", ids)
	}
	mine(t, s)
	if _, err := s.MineLate(); err != nil {
		t.Fatal(err)
	}
	if ind, _ := st.IntelGet(string(KindIP), "45.142.120.11"); ind.Total != 1 {
		t.Errorf("mined twice: %+v", ind)
	}
}
