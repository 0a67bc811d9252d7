package loadmsg

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/xarfd/xarfd/arf"
	"github.com/xarfd/xarfd/xarf"
)

// TestReportPath checks that the generated messages take the report path:
// a public origin, found where the report path looks for it, and the
// recipient in header, body and URLs for the redactor.
func TestReportPath(t *testing.T) {
	if !arf.IsPublic(netip.MustParseAddr(SourceIP)) {
		t.Fatalf("%s is not public: reports about it would be withheld", SourceIP)
	}
	in := xarf.Input{
		ReportID: "01890a5d-ac96-774b-bcce-b302099a8057", Received: time.Now(),
		Reporter: xarf.Contact{Org: "T", Contact: "abuse@t.example", Domain: "t.example"},
		Sender:   xarf.Contact{Org: "T", Contact: "abuse@t.example", Domain: "t.example"},
		Envelope: &xarf.Envelope{Peer: netip.MustParseAddrPort("127.0.0.1:4000"), MailFrom: "s@sender.example"},
	}
	for _, size := range []int{2048, 20480} {
		raw, err := Message(Trap, size, "x@trap.localhost", 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) < size || len(raw) > size+100 {
			t.Errorf("trap message of %d bytes, want about %d", len(raw), size)
		}
		if n := bytes.Count(raw, []byte("x%40trap.localhost")); n < 10 {
			t.Errorf("trap %d: %d encoded recipients in URLs", size, n)
		}
		in.Message = raw
		r, err := xarf.FromTrap(in)
		if err != nil || r.SourceIdentifier != SourceIP {
			t.Fatalf("trap %d: FromTrap = %+v, %v; want source %s", size, r, err, SourceIP)
		}

		raw, err = Message(ARF, size, "user@isp.example", 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) < size || len(raw) > size+100 {
			t.Errorf("ARF message of %d bytes, want about %d", len(raw), size)
		}
		rep, err := arf.Parse(raw)
		if err != nil || rep.Class != arf.ClassARF || rep.Origin == nil || rep.Origin.Method != arf.MethodSourceIP || rep.Origin.IP.String() != SourceIP {
			t.Fatalf("ARF %d: Parse = %+v, %v; want an ARF report from Source-IP %s", size, rep, err, SourceIP)
		}
		// Within reporter.max_age (default 7 days): reported, not withheld.
		if rep.ArrivalDate == nil || time.Since(rep.ArrivalDate.Time) > 2*time.Hour {
			t.Errorf("ARF %d: Arrival-Date %+v is not recent: the complaint would be withheld as stale", size, rep.ArrivalDate)
		}
		if got := rep.RecipientAddresses(); len(got) == 0 || got[0] != "user@isp.example" {
			t.Errorf("ARF %d: recipients %v", size, got)
		}
		in.Message = raw
		if r, err := xarf.FromARF(rep, in); err != nil || r.SourceIdentifier != SourceIP {
			t.Fatalf("ARF %d: FromARF = %+v, %v", size, r, err)
		}
	}
	if _, err := Message("bounce", 2048, "x@trap.localhost", 0); err == nil {
		t.Error("unknown kind accepted")
	}
}
