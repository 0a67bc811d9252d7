package ingest

import (
	"testing"

	"github.com/xarfd/xarfd/metrics"
	"github.com/xarfd/xarfd/store/storetest"
)

// counters returns the value of every series of a counter vector by its
// label values joined with "/".
func counters(t *testing.T, m *metrics.Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			k := ""
			for i, l := range s.GetLabel() {
				if i > 0 {
					k += "/"
				}
				k += l.GetValue()
			}
			out[k] = s.GetCounter().GetValue()
		}
	}
	return out
}

// A reprocess is counted in xarfd_reprocessed_total by its outcome, and
// leaves xarfd_messages_total as the arrival counted it: one delivery,
// quarantined.
func TestReprocessCounted(t *testing.T) {
	dir := t.TempDir()
	st := storetest.Open(t, dir)
	m := metrics.New()
	before := reprocessConfig(t, dir, `"198.51.100.0/24", "203.0.113.0/24"`)
	in, err := New(before, st, Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	e := env()
	e.Via, e.PeerIP = "http", e.PeerIP.Prev().Next()
	res, err := in.Accept(e, []Delivery{{Channel: before.Channel("trap"), Rcpts: []string{"victim@trap.test.example"}}}, forwarded)
	if err != nil || !res[0].Quarantined {
		t.Fatalf("%+v %v", res, err)
	}
	id := res[0].ID
	if r, err := in.Reprocess(id); err != nil || !r.Quarantined {
		t.Fatalf("%+v %v", r, err)
	}
	in2, err := New(reprocessConfig(t, dir, `"198.51.100.0/24"`), st, Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := in2.Reprocess(id); err != nil || !r.Report {
		t.Fatalf("%+v %v", r, err)
	}
	if got := counters(t, m, "xarfd_reprocessed_total"); len(got) != 2 || got["trap/quarantined"] != 1 || got["trap/report"] != 1 {
		t.Errorf("xarfd_reprocessed_total = %v", got)
	}
	if got := counters(t, m, "xarfd_messages_total"); len(got) != 1 || got["trap/quarantined"] != 1 {
		t.Errorf("xarfd_messages_total = %v", got)
	}
}
