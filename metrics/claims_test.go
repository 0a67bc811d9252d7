package metrics

import "testing"

func TestClaims(t *testing.T) {
	m := New()
	m.Claim(ClaimReport, ClaimWon)
	m.Claim(ClaimReport, ClaimWon)
	m.Claim(ClaimReport, ClaimTakenOver)
	m.Claim(ClaimNotification, ClaimLost)
	got := gather(t, m)
	for key, want := range map[string]float64{
		"xarfd_cluster_claims_total{kind=report,outcome=won}":        2,
		"xarfd_cluster_claims_total{kind=report,outcome=taken_over}": 1,
		"xarfd_cluster_claims_total{kind=notification,outcome=lost}": 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	var none *Metrics
	none.Claim(ClaimReport, ClaimError)
}
