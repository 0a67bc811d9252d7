package api

import (
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

type hourlyReply struct {
	Since, Until time.Time
	Hours        []store.HourStat
}

func TestHourlyStatsEndpoint(t *testing.T) {
	e := newEnv(t, true, nil)
	if r := e.do("POST", "/api/v1/channels/plain/messages", tokSubmitAll, "message/rfc822", trapBody("stats")); r.code != 202 {
		t.Fatalf("submit: %d %s", r.code, r.body)
	}
	notARF := []byte("From: someone@example.org\r\nSubject: hello\r\n\r\nnot a feedback report\r\n")
	if r := e.do("POST", "/api/v1/channels/fbl/messages", tokSubmitAll, "message/rfc822", notARF); r.code != 202 {
		t.Fatalf("submit: %d %s", r.code, r.body)
	}
	if q, _ := e.st.QuarantineEntries(); len(q) != 1 {
		t.Fatalf("want the fbl message quarantined: %+v", q)
	}

	r := e.get("/api/v1/stats/hourly", tokRead)
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var got hourlyReply
	r.json(t, &got)
	if got.Until.Sub(got.Since) != 24*time.Hour {
		t.Errorf("default range %v to %v, want the last day", got.Since, got.Until)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	byChannel := map[string]store.HourStat{}
	for _, h := range got.Hours {
		byChannel[h.Channel] = h
		if !h.Hour.Equal(now) && !h.Hour.Equal(now.Add(-time.Hour)) {
			t.Errorf("hour %v: not this hour", h.Hour)
		}
	}
	if h := byChannel["plain"]; h.Messages != 1 || h.Reports != 1 || h.Quarantined != 0 {
		t.Errorf("plain: %+v", h)
	}
	if h := byChannel["fbl"]; h.Messages != 1 || h.Reports != 0 || h.Quarantined != 1 {
		t.Errorf("fbl: %+v", h)
	}
	if !strings.Contains(string(r.body), `"quarantined":1`) || !strings.Contains(string(r.body), `"hour":"`) {
		t.Errorf("field names: %s", r.body)
	}

	r = e.get("/api/v1/stats/hourly?channel=fbl&since="+now.Add(-time.Hour).Format(time.RFC3339), tokRead)
	var one hourlyReply
	r.json(t, &one)
	if len(one.Hours) != 1 || one.Hours[0].Channel != "fbl" {
		t.Errorf("channel filter: %s", r.body)
	}
	r = e.get("/api/v1/stats/hourly?until="+now.Add(-time.Hour).Format(time.RFC3339), tokRead)
	var none hourlyReply
	r.json(t, &none)
	if r.code != 200 || len(none.Hours) != 0 || none.Hours == nil {
		t.Errorf("a range before any traffic: %d %s", r.code, r.body)
	}

	for _, c := range []struct {
		q    string
		code int
	}{
		{"?channel=nope", 404},
		{"?since=yesterday", 400},
		{"?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", 400},
		{"?since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", 400},
		{"?bogus=1", 400},
	} {
		if r := e.get("/api/v1/stats/hourly"+c.q, tokRead); r.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.q, r.code, r.body, c.code)
		}
	}
	if r := e.get("/api/v1/stats/hourly", ""); r.code != 401 {
		t.Errorf("without token: %d", r.code)
	}
}

type summaryBody struct {
	Channels []struct {
		Name                                 string
		Configured                           bool
		Kind                                 string
		Records                              int
		Messages, Reports, Quarantined, Sent uint64
	}
	Reporter struct {
		Enabled bool
		State   string
	}
	Outbox     map[string]int
	Store      struct{ Bytes, Quarantined int64 }
	Indicators map[string]int
	Cases      struct{ Open int }
}

func TestSummaryEndpoint(t *testing.T) {
	e, _ := newIntelEnv(t) // one trap message with four listed indicators
	notARF := []byte("From: someone@example.org\r\nSubject: hello\r\n\r\nnot a feedback report\r\n")
	if r := e.do("POST", "/api/v1/channels/fbl/messages", tokSubmitAll, "message/rfc822", notARF); r.code != 202 {
		t.Fatalf("submit: %d %s", r.code, r.body)
	}
	e.queue("plain", store.OutboxFailed)

	r := e.get("/api/v1/summary", tokRead)
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var s summaryBody
	r.json(t, &s)
	var names []string
	for _, c := range s.Channels {
		names = append(names, c.Name)
		if !c.Configured {
			t.Errorf("%s not configured", c.Name)
		}
		switch c.Name {
		case "trap":
			if c.Records != 1 || c.Messages != 1 || c.Reports != 1 || c.Kind != "trap" {
				t.Errorf("trap: %+v", c)
			}
		case "fbl":
			if c.Records != 1 || c.Messages != 1 || c.Quarantined != 1 || c.Reports != 0 {
				t.Errorf("fbl: %+v", c)
			}
		case "plain":
			if c.Records != 1 || c.Reports != 1 {
				t.Errorf("plain: %+v", c)
			}
		}
	}
	if strings.Join(names, ",") != "fbl,trap,plain" {
		t.Errorf("channels in configuration order: %v", names)
	}
	if s.Reporter.Enabled || s.Reporter.State != "dry-run" {
		t.Errorf("reporter %+v", s.Reporter)
	}
	if s.Outbox["failed"] != 1 || s.Outbox["sent"] != 0 || len(s.Outbox) != len(store.OutboxStatuses) {
		t.Errorf("outbox %v", s.Outbox)
	}
	if s.Store.Bytes <= 0 || s.Store.Quarantined != 1 || s.Cases.Open != 0 {
		t.Errorf("store %+v cases %+v", s.Store, s.Cases)
	}
	if s.Indicators["ip"] != 1 || s.Indicators["domain"] != 1 || s.Indicators["email"] != 1 {
		t.Errorf("indicators %v", s.Indicators)
	}
	if r := e.get("/api/v1/summary?since=2999-01-01T00:00:00Z", tokRead); r.code != 400 {
		t.Errorf("since in the future: %d", r.code)
	}
	if r := e.get("/api/v1/summary", ""); r.code != 401 {
		t.Errorf("no token: %d", r.code)
	}

	// Without intel there is no indicators object.
	plain := newEnv(t, false, nil)
	if r := plain.get("/api/v1/summary", ""); r.code != 200 || strings.Contains(string(r.body), "indicators") {
		t.Errorf("without intel: %d %s", r.code, r.body)
	}
}
