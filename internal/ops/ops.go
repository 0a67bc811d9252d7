// Package ops describes an operator's action (delist an indicator, act
// on a case, delete or reprocess a quarantined message, retry an outbox
// entry) as a value that a cluster carries to every node, so that every
// node's store changes alike (docs/cluster.md, "Operator actions").
//
// It sits below the services that act (intel, cases, ingest, reporter)
// and the cluster package that carries the actions, which the services
// cannot import.
package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/xarfd/xarfd/store"
)

// Kind says what an Op does.
type Kind string

// The kinds of Op.
const (
	// Delist: intel indicator IndicatorKind/Value delisted by hand.
	Delist Kind = "delist"
	// Case: Action (notify, restrict, resolve) on the case with CaseKey
	// and CaseFirstSeen (each node has its own id for the same case).
	Case Kind = "case"
	// QuarantineDelete: quarantined message Target deleted.
	QuarantineDelete Kind = "quarantine.delete"
	// Reprocess: quarantined message Target replaced by Entry, the
	// outcome of running it through ingest again on the node asked.
	Reprocess Kind = "quarantine.reprocess"
	// Retry: outbox entry Target requeued.
	Retry Kind = "outbox.retry"
)

// Known says whether k is a kind this build applies.
func Known(k Kind) bool {
	switch k {
	case Delist, Case, QuarantineDelete, Reprocess, Retry:
		return true
	}
	return false
}

// Op is one operator's action. At is when the node asked made it: every
// node applies it at that time (a delisting "at At" on every node, not
// whenever each applies it), which makes the outcome the same everywhere.
type Op struct {
	// ID identifies the action cluster-wide (Nats-Msg-Id); a node
	// applies each ID once.
	ID   string    `json:"id"`
	Kind Kind      `json:"kind"`
	Node string    `json:"node"`
	At   time.Time `json:"at"`
	// By and Reason are the operator's, as the local action records them.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`

	// Delist.
	IndicatorKind string `json:"indicator_kind,omitempty"`
	Value         string `json:"value,omitempty"`

	// Case.
	CaseKey       string    `json:"case_key,omitempty"`
	CaseFirstSeen time.Time `json:"case_first_seen,omitzero"`
	Action        string    `json:"action,omitempty"`

	// QuarantineDelete, Reprocess, Retry.
	Target store.ID `json:"target,omitzero"`

	// Reprocess: the entry that replaces the quarantined message. It
	// travels as a record (package cluster), not in the JSON.
	Entry *store.Entry `json:"-"`
}

// NewID returns a fresh action id.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Replicator carries an Op to every node of a cluster (package cluster).
// Replicate returns once the replicated stream acknowledged op, having
// applied it on this node too, with the error of that local apply. An op
// that was not acknowledged is not applied anywhere, and the error wraps
// store.ErrCommit: the caller answers 503, and nothing changed.
type Replicator interface {
	Replicate(ctx context.Context, op *Op) error
}

// ErrSkip wraps the reason an Op cannot apply on a node (its target is
// not there, or not in a state the action applies to): the node logs it
// and goes on with the stream. Any other error of an Applier is taken as
// the store's failure, and the op is applied again later.
var ErrSkip = errors.New("the operator's action does not apply on this node")

// Applier applies one Op to this node's store and services.
type Applier func(ctx context.Context, op *Op) error

// Mux routes an Op to the Applier of its kind.
type Mux map[Kind]Applier

// Apply applies op with the Applier of its kind.
func (m Mux) Apply(ctx context.Context, op *Op) error {
	f := m[op.Kind]
	if f == nil {
		return errors.Join(ErrSkip, errors.New("no applier for kind "+string(op.Kind)))
	}
	return f(ctx, op)
}
