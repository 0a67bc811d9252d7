package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xarfd/xarfd/store"
)

// fakeCases records the actions and applies resolve like package cases.
type fakeCases struct {
	st   *store.Store
	acts []string
}

func (f *fakeCases) Act(_ context.Context, id store.ID, action, by, reason string) (*store.Case, error) {
	f.acts = append(f.acts, action+"|"+by+"|"+reason)
	return f.st.UpdateCase(id, func(c *store.Case) error {
		if c.State == store.CaseResolved {
			return fmt.Errorf("%w: the case is resolved", store.ErrConflict)
		}
		if action == "resolve" {
			c.State = store.CaseResolved
		}
		return nil
	})
}

func putCase(t *testing.T, st *store.Store, sub, state string) store.ID {
	t.Helper()
	id, _ := store.NewID()
	err := st.UpdateCases(store.ID{}, func(tx *store.CaseTx) error {
		return tx.Put(&store.Case{ID: id, Key: "subscriber:" + sub, State: state, SubscriberID: sub,
			IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Updated: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCasesAPI(t *testing.T) {
	fc := &fakeCases{}
	e := newEnv(t, true, func(o *Options) { o.Cases = fc })
	fc.st = e.st
	a := putCase(t, e.st, "alice", store.CaseOpen)
	putCase(t, e.st, "bob", store.CaseRestricted)

	var list struct{ Cases []store.Case }
	r := e.get("/api/v1/cases?state=open", tokRead)
	r.json(t, &list)
	if r.code != 200 || len(list.Cases) != 1 || list.Cases[0].SubscriberID != "alice" {
		t.Fatalf("list open: %d %s", r.code, r.body)
	}
	e.get("/api/v1/cases?subscriber=bob", tokRead).json(t, &list)
	if len(list.Cases) != 1 || list.Cases[0].State != store.CaseRestricted {
		t.Fatalf("list bob: %+v", list)
	}
	if r := e.get("/api/v1/cases?state=closed", tokRead); r.code != 400 {
		t.Errorf("bad state: %d", r.code)
	}
	if r := e.get("/api/v1/cases", ""); r.code != 401 {
		t.Errorf("no token: %d", r.code)
	}
	var c store.Case
	if r := e.get("/api/v1/cases/"+a.String(), tokRead); r.code != 200 {
		t.Fatalf("get: %d %s", r.code, r.body)
	} else if r.json(t, &c); c.ID != a {
		t.Fatalf("get: %+v", c)
	}
	if r := e.get("/api/v1/cases/01a246c5-78b2-7332-a715-32ed9d338732", tokRead); r.code != 404 {
		t.Errorf("unknown case: %d", r.code)
	}
	path := "/api/v1/cases/" + a.String() + "/resolve"
	body := []byte(`{"reason":"cleaned up"}`)
	if r := e.do("POST", path, tokRead, "application/json", body); r.code != 403 {
		t.Errorf("read token resolves: %d", r.code)
	}
	if r := e.do("POST", path, tokSubmitAll, "application/json", []byte(`{}`)); r.code != 400 {
		t.Errorf("no reason: %d", r.code)
	}
	if r := e.do("POST", path, tokSubmitAll, "application/json", body); r.code != 200 {
		t.Fatalf("resolve: %d %s", r.code, r.body)
	}
	if len(fc.acts) != 1 || fc.acts[0] != "resolve|token feeder|cleaned up" {
		t.Errorf("acts %v", fc.acts)
	}
	if r := e.do("POST", path, tokSubmitAll, "application/json", body); r.code != 409 || !contains(string(r.body), "resolved") {
		t.Errorf("resolve twice: %d %s", r.code, r.body)
	}
}

func TestCaseStream(t *testing.T) {
	hub := NewCaseHub()
	e := newEnv(t, true, func(o *Options) { o.CaseHub = hub })
	req, _ := http.NewRequest("GET", e.ts.URL+"/api/v1/stream/cases", nil)
	req.Header.Set("Authorization", "Bearer "+tokRead)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, ": subscribed") {
		t.Fatalf("first line %q", l)
	}
	id, _ := store.NewID()
	hub.Publish(&store.Case{ID: id, Key: "subscriber:alice", State: store.CaseNotified, SubscriberID: "alice"})
	var lines []string
	for len(lines) < 3 {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "retry:") {
			lines = append(lines, l)
		}
	}
	if lines[0] != "event: case" || lines[1] != "id: "+id.String() || !strings.Contains(lines[2], `"state":"notified"`) {
		t.Errorf("event %q", lines)
	}
}

// GET /api/v1/cases pages like the reports: limit, cursor, next_cursor;
// following the cursor with the filters yields every matching case once,
// newest first, and the last page's next_cursor is "".
func TestCasesAPIPages(t *testing.T) {
	e := newEnv(t, true, nil)
	var open, bobs []store.ID // newest first
	for i := range 7 {
		sub, state := fmt.Sprintf("sub-%d", i), store.CaseOpen
		if i%3 == 1 {
			state = store.CaseResolved
		}
		if i%2 == 0 {
			sub = "bob"
		}
		id := putCase(t, e.st, sub, state)
		if state == store.CaseOpen {
			open = append([]store.ID{id}, open...)
		}
		if sub == "bob" {
			bobs = append([]store.ID{id}, bobs...)
		}
	}
	follow := func(filter string, limit int) (ids []store.ID, pages int) {
		t.Helper()
		cursor := ""
		for pages = 1; ; pages++ {
			var p struct {
				Cases      []store.Case
				NextCursor *string `json:"next_cursor"`
			}
			r := e.get(fmt.Sprintf("/api/v1/cases?%slimit=%d&cursor=%s", filter, limit, cursor), tokRead)
			if r.code != 200 {
				t.Fatalf("%s page %d: %d %s", filter, pages, r.code, r.body)
			}
			r.json(t, &p)
			if p.NextCursor == nil {
				t.Fatalf("%s: no next_cursor in %s", filter, r.body)
			}
			if len(p.Cases) > limit {
				t.Fatalf("%s: %d cases on a page of %d", filter, len(p.Cases), limit)
			}
			for _, c := range p.Cases {
				ids = append(ids, c.ID)
			}
			if *p.NextCursor == "" || pages > 20 {
				return ids, pages
			}
			cursor = *p.NextCursor
		}
	}
	if got, pages := follow("state=open&", 2); fmt.Sprint(got) != fmt.Sprint(open) || pages != 3 {
		t.Errorf("open cases over %d pages: %v, want %v", pages, got, open)
	}
	if got, pages := follow("subscriber=bob&", 1); fmt.Sprint(got) != fmt.Sprint(bobs) || pages != len(bobs) {
		t.Errorf("bob's cases over %d pages: %v, want %v", pages, got, bobs)
	}
	if got, _ := follow("", 3); len(got) != 7 {
		t.Errorf("all cases: %d, want 7", len(got))
	}
	for _, bad := range []string{"cursor=nope", "cursor=00000000-0000-0000-0000-000000000000", "limit=0", "limit=1001"} {
		r := e.get("/api/v1/cases?"+bad, tokRead)
		if name, _, _ := strings.Cut(bad, "="); r.code != 400 || !contains(string(r.body), `"parameter":"`+name+`"`) {
			t.Errorf("%s: %d %s", bad, r.code, r.body)
		}
	}
}
