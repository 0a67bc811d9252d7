package metrics

import "github.com/prometheus/client_golang/prometheus"

// Work kinds of Claim: what a cluster does once cluster-wide.
const (
	ClaimReport       = "report"       // an outbound report
	ClaimNotification = "notification" // a case's notification to a subscriber
	ClaimRestrict     = "restrict"     // a case's restrict webhook call
)

// Outcomes of Claim.
const (
	ClaimWon           = "won"            // this node claimed it and does the work
	ClaimLost          = "lost"           // another node holds a live claim; retried later
	ClaimTakenOver     = "taken_over"     // won after another node's claim expired (it died or stalled)
	ClaimSentElsewhere = "sent_elsewhere" // another node did it; settled here without sending
	ClaimCancelled     = "cancelled"      // an operator cancelled it on a node; settled here as cancelled
	ClaimError         = "error"          // the claim store could not be asked; retried later
)

func newClaims() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xarfd_cluster_claims_total",
		Help: "Claims of cluster-wide work (kind: report, notification, restrict) by outcome (won, lost, taken_over, sent_elsewhere, cancelled, error).",
	}, []string{"kind", "outcome"})
}

// Claim counts one claim of work of kind with its outcome (both from the
// constants above).
func (m *Metrics) Claim(kind, outcome string) {
	if m == nil {
		return
	}
	m.claims.WithLabelValues(kind, outcome).Inc()
}
