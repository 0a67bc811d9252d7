package contact

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// RDAP is a small RDAP (RFC 9082/9083) client for IP network queries: it
// asks <base>ip/<address>, follows the registries' redirects, and reads
// the email of the entities with the abuse role, at any depth.
type RDAP struct {
	base   string
	client *http.Client
}

// maxRDAPBody bounds one response (real ones are a few tens of KiB).
const maxRDAPBody = 2 << 20

// maxEntityDepth bounds the walk through nested entities.
const maxEntityDepth = 8

// NewRDAP returns a client for base (an http(s) URL; a missing trailing
// slash is added). A nil client gets one with a 15 s timeout.
func NewRDAP(base string, client *http.Client) *RDAP {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return &RDAP{base: base, client: client}
}

type rdapEntity struct {
	Roles      []string        `json:"roles"`
	VCardArray json.RawMessage `json:"vcardArray"`
	Entities   []rdapEntity    `json:"entities"`
}

type rdapNetwork struct {
	ObjectClassName string       `json:"objectClassName"`
	Entities        []rdapEntity `json:"entities"`
	ErrorCode       int          `json:"errorCode"`
}

// AbuseEmails returns the abuse addresses RDAP names for a, or
// ErrNotFound when the registry answers without one (or 404).
func (r *RDAP) AbuseEmails(ctx context.Context, a netip.Addr) ([]string, error) {
	u := r.base + "ip/" + a.Unmap().String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("rdap: %w", err)
	}
	req.Header.Set("Accept", "application/rdap+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("rdap query: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, ErrNotFound
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("rdap query %s: HTTP %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRDAPBody+1))
	if err != nil {
		return nil, fmt.Errorf("rdap query %s: reading: %w", u, err)
	}
	if len(body) > maxRDAPBody {
		return nil, fmt.Errorf("rdap query %s: response above %d bytes", u, maxRDAPBody)
	}
	emails, err := parseRDAP(body)
	if err != nil {
		return nil, fmt.Errorf("rdap query %s: %w", u, err)
	}
	if len(emails) == 0 {
		return nil, ErrNotFound
	}
	return emails, nil
}

// parseRDAP returns the emails of every entity with the abuse role in an
// RDAP ip network object, nested entities included, in document order
// (shallowest first), without duplicates.
func parseRDAP(body []byte) ([]string, error) {
	var n rdapNetwork
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("decoding RDAP response: %w", err)
	}
	if n.ErrorCode != 0 {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	level := n.Entities
	for depth := 0; depth < maxEntityDepth && len(level) > 0; depth++ {
		var next []rdapEntity
		for _, e := range level {
			if hasRole(e.Roles, "abuse") {
				for _, m := range vcardEmails(e.VCardArray) {
					if k := strings.ToLower(m); !seen[k] {
						seen[k] = true
						out = append(out, m)
					}
				}
			}
			next = append(next, e.Entities...)
		}
		level = next
	}
	return out, nil
}

func hasRole(roles []string, want string) bool {
	for _, r := range roles {
		if strings.EqualFold(r, want) {
			return true
		}
	}
	return false
}

// vcardEmails reads the email properties of a jCard (RFC 7095):
// ["vcard", [[name, params, type, value...], ...]].
func vcardEmails(raw json.RawMessage) []string {
	var card []json.RawMessage
	if json.Unmarshal(raw, &card) != nil || len(card) < 2 {
		return nil
	}
	var props [][]json.RawMessage
	if json.Unmarshal(card[1], &props) != nil {
		return nil
	}
	var out []string
	for _, p := range props {
		if len(p) < 4 {
			continue
		}
		var name string
		if json.Unmarshal(p[0], &name) != nil || !strings.EqualFold(name, "email") {
			continue
		}
		for _, v := range p[3:] {
			var s string
			if json.Unmarshal(v, &s) == nil {
				out = append(out, parseEmails(s)...)
			}
		}
	}
	return out
}
