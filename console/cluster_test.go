package console

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// An action a cluster could not get acknowledged (no quorum: an error
// wrapping store.ErrCommit) is a 503 page with Retry-After and a fixed
// text, never the error's; the entry is as it was.
func TestActionWithoutQuorumIs503(t *testing.T) {
	refuse := func(context.Context, store.ID, time.Time, string) (*store.OutboxEntry, error) {
		return nil, fmt.Errorf("publishing operator's action: nats: no responders: %w", store.ErrCommit)
	}
	e := newEnv(t, true, func(o *Options) { o.Retry, o.Cancel = refuse, refuse })
	id := e.trapHit("45.142.120.11", "x", "\r\nbody\r\n")
	w := e.client()
	w.login(tokWrite, http.StatusSeeOther)
	for _, verb := range []string{"retry", "cancel"} {
		r := w.post("/outbox/"+id.String()+"/"+verb, "/outbox", nil)
		if r.code != http.StatusServiceUnavailable || r.h.Get("Retry-After") == "" || strings.Contains(r.body, "nats") ||
			!strings.Contains(r.body, "nothing changed") {
			t.Errorf("%s without quorum = %d %v\n%s", verb, r.code, r.h, r.body)
		}
	}
	if ent, err := e.st.GetOutbox(id); err != nil || ent.Status == store.OutboxCancelled || !ent.Requeued.IsZero() {
		t.Errorf("the entry changed: %+v %v", ent, err)
	}
}
