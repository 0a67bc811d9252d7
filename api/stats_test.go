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
