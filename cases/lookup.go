// Package cases handles abuse from our own address space (channels whose
// uses include own): it finds the subscriber who held the address at the
// time of the abuse, groups reports about one subscriber into a case,
// notifies the subscriber, and calls the operator's provisioning system
// to restrict them.
package cases

import (
	"context"
	"net/netip"
	"time"
)

// Subscriber is a customer of ours who can be told and restricted.
type Subscriber struct {
	ID    string `json:"id"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
}

// Match sources, in the order they are asked.
const (
	SourceAssignments = "assignments"
	SourceStatic      = "static"
	SourceLookup      = "lookup"
)

// Match is the answer to "who had this address then".
type Match struct {
	Subscriber
	// Source says where the answer came from.
	Source string `json:"source"`
	// Ambiguous: several subscribers held the address then (CGNAT port
	// blocks without a known source port, or overlapping leases);
	// Candidates lists them and Subscriber is empty.
	Ambiguous  bool         `json:"ambiguous,omitempty"`
	Candidates []Subscriber `json:"candidates,omitempty"`
	// Note explains an ambiguity or an overlap.
	Note string `json:"note,omitempty"`
}

// Found reports whether m names one subscriber.
func (m *Match) Found() bool { return m != nil && !m.Ambiguous && m.ID != "" }

// Finder answers "who had ip (and port, 0 = unknown) at t". A nil Match
// with a nil error means nobody known.
type Finder interface {
	Find(ctx context.Context, ip netip.Addr, port int, t time.Time) (*Match, error)
}
