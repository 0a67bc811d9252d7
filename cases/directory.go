package cases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// fileState is one loaded subscriber file and what identifies its
// version on disk.
type fileState[T any] struct {
	data  T
	mtime time.Time
	size  int64
	stats LoadStats
}

// Directory answers "who had this address then" from the assignment
// log, the static table and the HTTP lookup, in that order. The files are
// read again when their modification time or size changes (Refresh), so
// a RADIUS export that rewrites the file needs no restart.
type Directory struct {
	staticPath, assignPath string
	lookup                 *HTTPLookup

	mu     sync.Mutex // serialises reloads
	static atomic.Pointer[fileState[*Static]]
	assign atomic.Pointer[fileState[*Assignments]]
}

// NewDirectory loads the files; a file that cannot be read is an error,
// malformed rows are not (see Stats).
func NewDirectory(staticPath, assignPath string, lookup *HTTPLookup) (*Directory, error) {
	d := &Directory{staticPath: staticPath, assignPath: assignPath, lookup: lookup}
	if _, err := d.Refresh(); err != nil {
		return nil, err
	}
	return d, nil
}

// Reloaded says which files a Refresh read again, with what they held.
type Reloaded struct {
	File  string
	Stats LoadStats
	Took  time.Duration
}

// Refresh reads again each file whose modification time or size
// changed. On an error the previous contents stay.
func (d *Directory) Refresh() ([]Reloaded, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Reloaded
	var errs []error
	if d.staticPath != "" {
		r, err := refresh(d.staticPath, &d.static, ParseStatic)
		if r != nil {
			out = append(out, *r)
		}
		errs = append(errs, err)
	}
	if d.assignPath != "" {
		r, err := refresh(d.assignPath, &d.assign, ParseAssignments)
		if r != nil {
			out = append(out, *r)
		}
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

func refresh[T any](path string, p *atomic.Pointer[fileState[T]], parse func(io.Reader) (T, LoadStats, error)) (*Reloaded, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading subscriber file: %w", err)
	}
	if cur := p.Load(); cur != nil && cur.mtime.Equal(fi.ModTime()) && cur.size == fi.Size() {
		return nil, nil
	}
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading subscriber file: %w", err)
	}
	defer f.Close()
	data, stats, err := parse(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	p.Store(&fileState[T]{data: data, mtime: fi.ModTime(), size: fi.Size(), stats: stats})
	return &Reloaded{File: path, Stats: stats, Took: time.Since(t0)}, nil
}

// Find implements Finder.
func (d *Directory) Find(ctx context.Context, ip netip.Addr, port int, t time.Time) (*Match, error) {
	if s := d.assign.Load(); s != nil {
		if m := s.data.Lookup(ip, port, t); m != nil {
			return m, nil
		}
	}
	if s := d.static.Load(); s != nil {
		if sub, ok := s.data.Lookup(ip); ok {
			return &Match{Subscriber: sub, Source: SourceStatic}, nil
		}
	}
	if d.lookup != nil {
		return d.lookup.Find(ctx, ip, port, t)
	}
	return nil, nil
}

// HTTPLookup asks the operator's own service: GET url?ip=&port=&time=
// answered by 200 with JSON {"subscriber_id","email","name"} (or
// {"candidates":[…]} when it cannot tell), or 404 for nobody. Answers,
// "nobody" included, are cached for ttl.
type HTTPLookup struct {
	base   *url.URL
	client *http.Client
	ttl    time.Duration
	now    func() time.Time

	mu    sync.Mutex
	cache map[lookupKey]cached
}

type lookupKey struct {
	ip   netip.Addr
	port int
	// minute: the time in minutes; leases do not change faster.
	minute int64
}

type cached struct {
	m       *Match
	expires time.Time
}

// maxLookupCache bounds the cache; when full it starts again empty.
const maxLookupCache = 100000

// NewHTTPLookup returns nil for an empty rawURL.
func NewHTTPLookup(rawURL string, timeout, ttl time.Duration, client *http.Client) (*HTTPLookup, error) {
	if rawURL == "" {
		return nil, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("subscribers.lookup_url: %w", err)
	}
	if client == nil {
		client = &http.Client{}
	}
	c := *client
	c.Timeout = timeout
	return &HTTPLookup{base: u, client: &c, ttl: ttl, now: time.Now, cache: map[lookupKey]cached{}}, nil
}

// lookupAnswer is the service's JSON.
type lookupAnswer struct {
	SubscriberID string `json:"subscriber_id"`
	Email        string `json:"email"`
	Name         string `json:"name"`
	Candidates   []struct {
		SubscriberID string `json:"subscriber_id"`
		Email        string `json:"email"`
		Name         string `json:"name"`
	} `json:"candidates"`
}

// maxLookupBody bounds an answer: it names one subscriber.
const maxLookupBody = 64 << 10

// Find implements Finder.
func (h *HTTPLookup) Find(ctx context.Context, ip netip.Addr, port int, t time.Time) (*Match, error) {
	key := lookupKey{ip: ip.Unmap(), port: port, minute: t.Unix() / 60}
	now := h.now()
	h.mu.Lock()
	if c, ok := h.cache[key]; ok && now.Before(c.expires) {
		h.mu.Unlock()
		return c.m, nil
	}
	h.mu.Unlock()

	u := *h.base
	q := u.Query()
	q.Set("ip", ip.Unmap().String())
	if port > 0 {
		q.Set("port", strconv.Itoa(port))
	}
	q.Set("time", t.UTC().Format(time.RFC3339))
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("subscriber lookup: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("subscriber lookup: %w", err)
	}
	defer resp.Body.Close()
	var m *Match
	switch {
	case resp.StatusCode == http.StatusNotFound:
	case resp.StatusCode == http.StatusOK:
		var a lookupAnswer
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxLookupBody)).Decode(&a); err != nil {
			return nil, fmt.Errorf("subscriber lookup: decoding the answer: %w", err)
		}
		m = a.match()
	default:
		return nil, fmt.Errorf("subscriber lookup: %s answered %s", h.base.Host, resp.Status)
	}
	h.mu.Lock()
	if len(h.cache) >= maxLookupCache {
		clear(h.cache)
	}
	h.cache[key] = cached{m: m, expires: now.Add(h.ttl)}
	h.mu.Unlock()
	return m, nil
}

func (a *lookupAnswer) match() *Match {
	if a.SubscriberID != "" {
		return &Match{Subscriber: Subscriber{ID: a.SubscriberID, Email: a.Email, Name: a.Name}, Source: SourceLookup}
	}
	switch len(a.Candidates) {
	case 0:
		return nil
	case 1:
		c := a.Candidates[0]
		return &Match{Subscriber: Subscriber{ID: c.SubscriberID, Email: c.Email, Name: c.Name}, Source: SourceLookup}
	}
	m := &Match{Source: SourceLookup, Ambiguous: true, Note: "the lookup service named several subscribers"}
	for _, c := range a.Candidates {
		if c.SubscriberID != "" {
			m.Candidates = append(m.Candidates, Subscriber{ID: c.SubscriberID, Email: c.Email, Name: c.Name})
		}
	}
	return m
}

// Stats returns what the last load of each file found, by path.
func (d *Directory) Stats() map[string]LoadStats {
	out := map[string]LoadStats{}
	if s := d.static.Load(); s != nil {
		out[d.staticPath] = s.stats
	}
	if s := d.assign.Load(); s != nil {
		out[d.assignPath] = s.stats
	}
	return out
}
