package mailauth

import (
	"bytes"
	"errors"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// libraryView is what the DKIM verifier itself makes of raw: whether it
// finds signatures, and whether it can read the header at all.
func libraryView(raw []byte) (sig, complete bool) {
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(string) ([]string, error) { return nil, errors.New("no DNS in this test") },
	})
	return len(verifs) > 0, err == nil
}

var scanCases = []string{
	"From: a\r\n\r\nbody",
	"DKIM-Signature: v=1\r\nFrom: a\r\n\r\n",
	"dkim-signature : v=1\r\n\r\n",
	"From: a\r\n DKIM-Signature: folded into From\r\n\r\n",
	" DKIM-Signature: a first line that starts with a space\r\n\r\n",
	"X-DKIM-Signature: v=1\r\n\r\n",
	"From: a\nDKIM-Signature: bare LF\n\nbody",
	"From: a\r\nSubject: no end of header",
	"From: a\r\nSubject: x\r\n",
	"",
	"\r\n",
	"DKIM-Signature\r\n\r\n",
	"From: a\r\n\r\nDKIM-Signature: in the body\r\n",
}

func TestScanDKIMSignatureAgreesWithVerifier(t *testing.T) {
	for _, c := range scanCases {
		sig, complete := scanDKIMSignature([]byte(c))
		lsig, lcomplete := libraryView([]byte(c))
		if complete != lcomplete || (complete && sig != lsig) {
			t.Errorf("%q: scan says sig=%v complete=%v, verifier sig=%v readable=%v", c, sig, complete, lsig, lcomplete)
		}
	}
}

// FuzzScanDKIMSignature holds the shortcut in Check to the verifier: a
// message the scan calls complete and unsigned must be one the verifier
// reads and finds no signature in.
func FuzzScanDKIMSignature(f *testing.F) {
	for _, c := range scanCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		sig, complete := scanDKIMSignature(raw)
		if sig || !complete {
			return // the verifier runs anyway
		}
		if lsig, lcomplete := libraryView(raw); lsig || !lcomplete {
			t.Fatalf("%q: scan skips verification, but the verifier finds sig=%v readable=%v", raw, lsig, lcomplete)
		}
	})
}
