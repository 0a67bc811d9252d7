package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// fillReports stores n small reports of channel trap, as a busy trap
// would have them, in batches.
func fillReports(b *testing.B, st *store.Store, n int) {
	b.Helper()
	for i := 0; i < n; {
		var es []store.Entry
		for j := 0; j < 500 && i < n; j, i = j+1, i+1 {
			id, _ := store.NewID()
			ip := netip.AddrFrom4([4]byte{45, 142, byte(i >> 8), byte(i)})
			doc, _ := json.Marshal(map[string]any{"xarf_version": "4.2.0", "report_id": id.String(), "category": "messaging", "type": "spam",
				"evidence_source": "spamtrap", "source_identifier": ip.String(), "subject": fmt.Sprintf("offer %d", i),
				"tags": []string{"origin:received-chain"}, "timestamp": time.Now().UTC().Format(time.RFC3339)})
			es = append(es, store.Entry{Report: &store.Report{ID: id, Channel: "trap", SourceIP: ip, Via: "smtp", XARF: doc},
				Outbox: &store.OutboxEntry{ID: id, Channel: "trap", Status: store.OutboxPending, Created: time.Now().UTC(), NextAttempt: time.Now().UTC()}})
		}
		if err := st.Put(es); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReportsPage: the newest page of the listing, unfiltered and
// with a text filter that matches nothing (a scan of scanLimit reports),
// over 20,000 stored reports.
func BenchmarkReportsPage(b *testing.B) {
	e := newEnv(b, false)
	fillReports(b, e.st, 20000)
	for _, tc := range []struct{ name, path string }{
		{"newest", "/reports"}, {"text-no-match", "/reports?text=zzzz"}, {"overview", "/"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", tc.path, nil)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := httptest.NewRecorder()
				e.c.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d", tc.path, w.Code)
				}
			}
		})
	}
}
