package reporter

import (
	"strings"
	"testing"

	"github.com/xarfd/xarfd/store"
)

// TestOwnNetworksNeverSentOutside: abuse from own_networks stays inside
// whatever the channel says: uses report and own, partners in report_to
// (which skip the contact lookup), the reporter enabled.
func TestOwnNetworksNeverSentOutside(t *testing.T) {
	d := startDesk(t, nil)
	e := setup(t, `
channels:
  - name: trap
    kind: trap
    addresses: ["*@trap.reporter.test"]
    redact: {recipients: true}
    uses: [report, own, store]
    report_to: ["partner@origin.test"]
`+smarthostYAML(d.addr, true, `own_networks: ["192.88.99.0/24", "2a01:4f8:77::/48"]`), Options{})
	var ids []store.ID
	for _, ip := range []string{"192.88.99.10", "2a01:4f8:77::5"} {
		ids = append(ids, e.trapHit(t, "trap", "a@trap.reporter.test", ip, "own "+ip))
	}
	outside := e.trapHit(t, "trap", "a@trap.reporter.test", "192.88.98.1", "outside")
	e.run(t, func() bool {
		for _, id := range append(ids, outside) {
			if s := e.status(t, id); s == store.OutboxPending || s == store.OutboxSending {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if x := e.entry(t, id); x.Status != store.OutboxWithheld || !strings.Contains(x.Reason, "own_networks") {
			t.Errorf("own report %s: %s %q", id, x.Status, x.Reason)
		}
	}
	// The control: the same channel does send about other addresses.
	msgs := d.messages()
	if len(msgs) != 1 || msgs[0].To[0] != "partner@origin.test" {
		t.Fatalf("desk got %d messages, want only the one about 192.88.98.1", len(msgs))
	}
	if strings.Contains(string(msgs[0].Data), "192.88.99.10") {
		t.Error("own address in an outbound report")
	}
}
