package cases

import (
	"fmt"

	"github.com/xarfd/xarfd/store"
)

// lateReports returns the reports a reprocess made out of messages that
// the cursor had passed (store.ScanLateReports) and that are not among
// reps already, and every id it looked at, for UpdateCases to take off
// the queue together with the cases the reports change.
func (m *Manager) lateReports(reps []store.Report, keep func(*store.Report) bool) ([]store.Report, []store.ID, error) {
	late, seen, err := m.st.ScanLateReports(batchSize, keep)
	if err != nil {
		return nil, nil, fmt.Errorf("reading reprocessed reports: %w", err)
	}
	in := make(map[store.ID]bool, len(reps))
	for i := range reps {
		in[reps[i].ID] = true
	}
	out := late[:0]
	for _, r := range late {
		if !in[r.ID] { // a recent message's report, found by the scan too
			out = append(out, r)
		}
	}
	return out, seen, nil
}
