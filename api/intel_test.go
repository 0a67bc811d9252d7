package api

import (
	"net/url"
	"strings"
	"testing"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/intel"
)

const intelHit = "Received: from bad (bad [45.142.120.11]) by relay.test.example; Mon, 2 Mar 2026 10:00:00 +0000\r\n" +
	"From: offers@spam-domain.biz\r\nTo: victim@trap.test.example\r\nSubject: win\r\n\r\n" +
	"https://click.spam-domain.biz/x?u=1 mail claims@winner-prize.top\r\n"

// newIntelEnv is the test API with the trap channel using intel.
func newIntelEnv(t *testing.T) (*env, *intel.Service) {
	var svc *intel.Service
	e := newEnv(t, true, func(o *Options) {
		ch := o.Config.Channel("trap")
		ch.Uses = append(ch.Uses, config.UseIntel)
		o.Config.Intel.IPZone, o.Config.Intel.DomainZone = "bl.test.example", "dbl.test.example"
		var err error
		if svc, err = intel.New(o.Config, o.Store, intel.Options{OnEvent: o.Hub.PublishIndicator}); err != nil {
			t.Fatal(err)
		}
		o.Intel = svc
	})
	if r := e.do("POST", "/api/v1/channels/trap/messages", tokSubmitAll, "message/rfc822", []byte(intelHit)); r.code != 202 {
		t.Fatalf("submit: %d %s", r.code, r.body)
	}
	if n, err := svc.Mine(); err != nil || n != 1 {
		t.Fatalf("mined %d: %v", n, err)
	}
	return e, svc
}

type indicatorList struct {
	Indicators []struct {
		Kind, Value string
		Listed      bool
		TotalHits   int `json:"total_hits"`
	}
	NextCursor string `json:"next_cursor"`
}

func TestIndicatorsAPI(t *testing.T) {
	e, _ := newIntelEnv(t)
	var l indicatorList
	e.get("/api/v1/indicators", tokRead).json(t, &l)
	var got []string
	for _, i := range l.Indicators {
		got = append(got, i.Kind+" "+i.Value)
		if !i.Listed || i.TotalHits != 1 {
			t.Errorf("%+v", i)
		}
	}
	want := "ip 45.142.120.11,domain spam-domain.biz,url https://click.spam-domain.biz/x,email claims@winner-prize.top"
	if strings.Join(got, ",") != want {
		t.Fatalf("indicators %q, want %q", strings.Join(got, ","), want)
	}
	if strings.Contains(string(e.get("/api/v1/indicators", tokRead).body), "trap.test.example") {
		t.Error("the trap domain is listed")
	}

	// Paging across kinds with limit=1 visits each once.
	var paged []string
	cursor := ""
	for i := 0; i < 10; i++ {
		var p indicatorList
		e.get("/api/v1/indicators?limit=1&cursor="+cursor, tokRead).json(t, &p)
		for _, x := range p.Indicators {
			paged = append(paged, x.Kind+" "+x.Value)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if strings.Join(paged, ",") != want {
		t.Errorf("paged %q", paged)
	}

	var f indicatorList
	e.get("/api/v1/indicators?kind=domain&listed=true", tokRead).json(t, &f)
	if len(f.Indicators) != 1 || f.Indicators[0].Value != "spam-domain.biz" {
		t.Errorf("kind=domain: %+v", f)
	}
	e.get("/api/v1/indicators?listed=false", tokRead).json(t, &f)
	if len(f.Indicators) != 0 {
		t.Errorf("listed=false: %+v", f)
	}
	e.get("/api/v1/indicators?since=2999-01-01T00:00:00Z", tokRead).json(t, &f)
	if len(f.Indicators) != 0 {
		t.Errorf("since in the future: %+v", f)
	}
	for _, bad := range []string{"?kind=asn", "?listed=maybe", "?since=yesterday", "?cursor=%%%", "?limit=0", "?foo=1"} {
		if r := e.get("/api/v1/indicators"+bad, tokRead); r.code != 400 {
			t.Errorf("%s: %d", bad, r.code)
		}
	}

	r := e.get("/api/v1/indicators/url/"+url.PathEscape("https://click.spam-domain.biz/x"), tokRead)
	if r.code != 200 || !contains(string(r.body), `"listed":true`) || !contains(string(r.body), `"evidence_source":"spamtrap"`) {
		t.Errorf("url lookup: %d %s", r.code, r.body)
	}
	if r := e.get("/api/v1/indicators/ip/45.142.120.12", tokRead); r.code != 404 || !contains(string(r.body), `"listed":false`) {
		t.Errorf("unknown ip: %d %s", r.code, r.body)
	}
	if r := e.get("/api/v1/indicators/asn/1", tokRead); r.code != 404 {
		t.Errorf("unknown kind: %d", r.code)
	}

	if r := e.get("/api/v1/blocklist/domain.txt", tokRead); r.code != 200 || string(r.body) != "spam-domain.biz\n" || r.h.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("feed: %d %q %v", r.code, r.body, r.h)
	}
	if r := e.get("/api/v1/blocklist/domain.csv", tokRead); r.code != 404 {
		t.Errorf("bad feed name: %d", r.code)
	}
	if r := e.get("/api/v1/blocklist/ip.txt", ""); r.code != 401 {
		t.Errorf("feed without token: %d", r.code)
	}
}

func TestDelistAPI(t *testing.T) {
	e, svc := newIntelEnv(t)
	p := "/api/v1/indicators/ip/45.142.120.11"
	if r := e.do("DELETE", p, tokRead, "application/json", []byte(`{"reason":"x"}`)); r.code != 403 {
		t.Errorf("read token: %d", r.code)
	}
	for _, body := range []string{``, `{}`, `{"reason":"  "}`, `{"reason":"x","extra":1}`, `not json`} {
		if r := e.do("DELETE", p, tokSubmitAll, "application/json", []byte(body)); r.code != 400 {
			t.Errorf("body %q: %d", body, r.code)
		}
	}
	if _, ok := svc.Lookup(intel.KindIP, "45.142.120.11"); !ok {
		t.Fatal("delisted by a refused request")
	}
	if r := e.do("DELETE", "/api/v1/indicators/ip/45.142.120.99", tokSubmitAll, "application/json", []byte(`{"reason":"x"}`)); r.code != 404 {
		t.Errorf("unknown: %d", r.code)
	}
	r := e.do("DELETE", p, tokSubmitAll, "application/json", []byte(`{"reason":"cleaned"}`))
	if r.code != 200 || !contains(string(r.body), `"reason":"cleaned"`) || !contains(string(r.body), `"by":"feeder"`) {
		t.Fatalf("delist: %d %s", r.code, r.body)
	}
	if _, ok := svc.Lookup(intel.KindIP, "45.142.120.11"); ok {
		t.Error("still listed")
	}
	if r := e.get("/api/v1/blocklist/ip.txt", tokRead); string(r.body) != "" {
		t.Errorf("feed after delisting: %q", r.body)
	}
}

func TestIndicatorsOffWithoutIntel(t *testing.T) {
	e := newEnv(t, true, nil)
	if r := e.get("/api/v1/indicators", tokRead); r.code != 404 {
		t.Errorf("%d", r.code)
	}
}
