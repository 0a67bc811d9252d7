package metrics

import (
	"testing"
	"time"
)

// gather returns every sample as "name{label=value,...}" -> value.
func gather(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			key := mf.GetName() + "{"
			for i, l := range s.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + "=" + l.GetValue()
			}
			key += "}"
			switch {
			case s.Counter != nil:
				out[key] = s.Counter.GetValue()
			case s.Gauge != nil:
				out[key] = s.Gauge.GetValue()
			case s.Histogram != nil:
				out[key] = float64(s.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func TestCountersAndLabels(t *testing.T) {
	m := New()
	m.SMTPReply(250)
	m.SMTPReply(250)
	m.SMTPReply(550)
	m.Message("trap", OutcomeReport)
	m.Redactions("trap", "base64", 3)
	m.Redactions("trap", "hex", 0) // zero adds no series
	m.CommitLatency(0.002)
	m.StoreTransaction(9, 1500*time.Microsecond)
	m.StoreTransaction(1, 700*time.Microsecond)
	m.Delivery("sent")
	m.StreamDropped()
	m.StreamRefused(StreamConsole)
	m.Reprocessed("trap", OutcomeReport)
	m.Gauge("xarfd_test_gauge", "test", func() float64 { return 7 })

	got := gather(t, m)
	for key, want := range map[string]float64{
		"xarfd_smtp_replies_total{code=250}":                2,
		"xarfd_smtp_replies_total{code=550}":                1,
		"xarfd_messages_total{channel=trap,outcome=report}": 1,
		"xarfd_redactions_total{channel=trap,form=base64}":  3,
		"xarfd_store_commit_seconds{}":                      1,
		"xarfd_store_transaction_seconds{}":                 2,
		"xarfd_store_transaction_operations{}":              2,
		"xarfd_deliveries_total{result=sent}":               1,
		"xarfd_stream_dropped_total{}":                      1,
		"xarfd_stream_refused_total{interface=console}":     1,
		"xarfd_stream_refused_total{interface=api}":         0,
		"xarfd_test_gauge{}":                                7,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if n := got["xarfd_reprocessed_total{channel=trap,outcome=report}"]; n != 1 {
		t.Errorf("xarfd_reprocessed_total = %v, want 1", n)
	}
	if _, ok := got["xarfd_stream_refused_total{interface=api}"]; !ok {
		t.Error("xarfd_stream_refused_total{interface=\"api\"} is not there before its first refusal")
	}
	if _, ok := got["xarfd_redactions_total{channel=trap,form=hex}"]; ok {
		t.Error("a zero count created a series")
	}
	if _, ok := got["go_goroutines{}"]; !ok {
		t.Error("runtime collector missing")
	}
	// The transaction histograms add up what they observed: ten
	// operations in two transactions of 2.2 ms in all.
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]float64{}
	for _, mf := range mfs {
		if h := mf.GetMetric()[0].GetHistogram(); h != nil {
			sums[mf.GetName()] = h.GetSampleSum()
		}
	}
	if got := sums["xarfd_store_transaction_operations"]; got != 10 {
		t.Errorf("operations sum = %v, want 10", got)
	}
	if got := sums["xarfd_store_transaction_seconds"]; got < 0.00219 || got > 0.00221 {
		t.Errorf("seconds sum = %v, want 0.0022", got)
	}
}

func TestNilCountsNothing(t *testing.T) {
	var m *Metrics
	m.SMTPReply(250)
	m.Message("x", OutcomeError)
	m.Redactions("x", "literal", 1)
	m.CommitLatency(1)
	m.StoreTransaction(1, time.Millisecond)
	m.Delivery("sent")
	m.StreamDropped()
	m.Gauge("x", "y", func() float64 { return 0 })
}
