// Package cluster makes several xarfd nodes one system on NATS
// JetStream (docs/cluster.md).
//
// A node accepts a message as a single node does (route, parse, redact,
// convert), then publishes the store entries of the message as one
// record to the replicated stream XARFD, with Nats-Msg-Id set to the
// first entry's id, and answers 250 (202 over HTTP) only after the
// stream acknowledged it: the record is then on a majority of the
// stream's replicas, fsynced there when cluster.sync is always. A
// publish that fails or times out is 451 4.3.0 (503 over HTTP); nothing
// is stored locally then.
//
// After the acknowledgement the accepting node applies the entries to
// its own bbolt store at once (store.PutNew), so that its API shows them
// immediately. Every node, the accepting one included, also reads the
// whole stream through its own durable consumer (named cluster.node)
// and applies each record to its store with store.PutNew, acknowledging
// after the commit: a record is applied once per node however often it
// is delivered, and what a node already held (its outbox state above
// all) is never reset. A node that was down resumes from its consumer's
// position; a new node reads the stream from its start.
//
// Each report is announced once per node: by ingest (OnReport) when
// Commit stored it, by the consumer (Options.OnApply) when the stream
// brought it first. The live stream, the intel and case workers hang
// there as they do on a single node.
//
// Outbound work (the outbox every node now holds) is claimed cluster
// wide in a JetStream KV bucket (claim*.go), so that each report is sent
// once.
//
// An operator's action (package internal/ops: a delisting, a case
// action, a quarantine delete or reprocess, an outbox retry) travels as
// an op record on the same stream (op.go, subjects xarfd.op.<kind>):
// Replicate publishes it and waits for the acknowledgement, and every
// node applies it through Options.ApplyOp in stream order, once per
// action id (marked in the node's store).
package cluster
