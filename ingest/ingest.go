// Package ingest is the one way a message enters xarfd: smtpd and the
// HTTP API both hand it (channel, envelope, bytes), and it decides what
// is stored. Today it stores the message as received; the ARF parser,
// the redactor and the XARF converter slot in here without smtpd or the
// API changing.
package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/store"
)

// Delivery is the part of one message that goes to one channel: the
// channel and the recipients that routed to it. A message whose
// recipients span two channels is two deliveries, stored separately, so
// that one channel never sees the other's recipients.
type Delivery struct {
	Channel *config.Channel
	Rcpts   []string
}

// Ingester stores messages. It is safe for concurrent use.
type Ingester struct {
	store *store.Store
	now   func() time.Time
}

// New returns an Ingester writing to st.
func New(st *store.Store) *Ingester {
	return &Ingester{store: st, now: time.Now}
}

// ErrNoDelivery is returned when Accept is called without a delivery.
var ErrNoDelivery = errors.New("ingest: no delivery")

// Accept stores raw once per delivery in one durable transaction and
// returns the ids, in the order of deliveries. env.Rcpts is ignored: each
// record gets its delivery's recipients. raw must not be modified after
// the call.
func (in *Ingester) Accept(env store.Envelope, deliveries []Delivery, raw []byte) ([]store.ID, error) {
	if len(deliveries) == 0 {
		return nil, ErrNoDelivery
	}
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = in.now().UTC()
	}
	msgs := make([]*store.Message, len(deliveries))
	raws := make([][]byte, len(deliveries))
	ids := make([]store.ID, len(deliveries))
	for i, d := range deliveries {
		id, err := store.NewID()
		if err != nil {
			return nil, fmt.Errorf("making message id: %w", err)
		}
		e := env
		e.Rcpts = append([]string(nil), d.Rcpts...)
		msgs[i] = &store.Message{
			ID:       id,
			Channel:  d.Channel.Name,
			Envelope: e,
			Size:     len(raw),
			Status:   store.StatusReceived,
		}
		raws[i] = raw
		ids[i] = id
	}
	if err := in.store.PutMessages(msgs, raws); err != nil {
		return nil, fmt.Errorf("storing message: %w", err)
	}
	return ids, nil
}
