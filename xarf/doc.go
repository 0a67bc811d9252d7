// Package xarf holds the XARF v4.2.0 report type, the conversion of spam-trap
// hits and feedback-loop complaints into it, and the checks the JSON schema
// cannot express.
//
// # Types
//
// Report has typed fields for the core members and the messaging ones, and
// keeps every other member in Extra, so a valid document of any category
// survives Unmarshal and Marshal without loss.
//
// # Conversion
//
// FromTrap and FromARF turn one message into one messaging/spam report
// (docs/reporting.md has what each Feedback-Type becomes). Every text field is read from Input.Message,
// the message as stored (redacted for a redacting channel), never from
// anything else, and recipients are never looked for: smtp_to is what the
// caller passes, and only when recipients are not redacted. Nothing is
// invented to satisfy the schema: without both an envelope sender and a
// source port the protocol is "other" (tag protocol:smtp, and the description
// says why); without an origin address conversion fails with ErrNoOrigin.
// FromARF converts only what arf's Disposition calls an abuse complaint
// (abuse, fraud, virus, or no Feedback-Type); authentication failure
// reports, retractions (not-spam) and other types fail with ErrNotAbuse.
// fraud and virus stay messaging/spam with their feedback-type tag: the
// v4.2.0 content types need the URL of a hosted site or file.
// Private and reserved origins are kept (tag origin:non-public); whether to
// send is decided elsewhere.
//
// The origin of a trap hit is the SMTP peer for direct delivery; for mail
// handed on by a trusted relay (or when there was no SMTP transaction) it is
// the first Received hop whose client address is neither trusted nor
// loopback, walking from the most recent hop. A hop from elsewhere that
// records no client address stops the walk (the headers below it were
// written by hosts nobody trusts): ErrNoOrigin.
//
// The evidence is the message itself, base64, with its sha256 and size, as
// message/rfc822; a message above MaxEvidenceSize (5 MiB, the spec's limit per
// item) is cut to its header, given as text/rfc822-headers, and the
// description says so.
//
// # Validation
//
// Validator (NewValidator) checks a document against the master schema with
// format and content assertions on, resolving every $id from the local schema
// files. Validate checks what the schema cannot: protocol smtp with
// smtp_from and source_port, evidence hashes, sizes and base64, redaction
// placeholders, first_seen before last_seen. Validator.Check runs both. All
// return a *ValidationError listing every reason.
package xarf
