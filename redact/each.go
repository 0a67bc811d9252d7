package redact

// Each calls fn for every form with a non-zero count, in Form order, so
// that callers can export the counts (metrics, logs) without knowing the
// list of forms.
func (s Summary) Each(fn func(Form, int)) {
	for f := Form(0); f < numForms; f++ {
		if s.counts[f] > 0 {
			fn(f, s.counts[f])
		}
	}
}
