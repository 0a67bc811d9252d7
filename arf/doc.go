// Package arf reads and writes abuse feedback reports: the Abuse Reporting
// Format of RFC 5965, its authentication-failure extension (RFC 6591) and
// Source-Port (RFC 6692), as mailbox providers actually send them.
//
// # What Parse accepts
//
// Real reports deviate from the RFCs in many ways, and a report that is
// rejected is a complaint nobody acts on. Parse therefore reads leniently
// and records every deviation as a typed Warning instead of failing:
//
//   - LF, CRLF and bare-CR line endings (also mixed), a UTF-8 byte-order mark,
//     an mbox "From " line, field names in any case, folded and empty values;
//   - a multipart/mixed outer type, a missing or different report-type, a
//     missing boundary parameter, a missing closing boundary;
//   - a base64 or quoted-printable feedback part; a part with an unknown or
//     broken transfer encoding keeps its raw bytes instead of aborting;
//   - feedback parts written on a single line or in YAML style, the pre-RFC
//     Received-Date, every Feedback-Type (abuse, fraud, virus, other,
//     not-spam, auth-failure, the draft opt-out, xarf, and unregistered ones);
//   - the reported message as message/rfc822, text/rfc822-headers,
//     message/global and misspellings such as text/rfc822-header, including
//     a reported message that is itself a bounce;
//   - dates in RFC 5322 (obsolete zones, comments, two-digit years), ISO 8601,
//     date-only and zone-less forms, kept raw beside the parsed time.
//
// Unknown feedback fields are kept in order. Work is bounded (MaxInputSize,
// MIME nesting depth, fields per header, parts per multipart, warnings) and
// linear in the input, and Parse never panics: a bug surfaces as ErrInternal.
//
// # Classification
//
// Every parsed message gets a Class and a human-readable Reason:
//
//   - ClassARF: a message/feedback-report part with a Feedback-Type. Form
//     deviations (see Warnings) do not demote a report whose feedback part
//     could be read.
//   - ClassARFMalformed: meant as a report and usable facts were recovered,
//     but only heuristically: feedback fields under another media type or
//     pasted into a text part, Feedback-Type missing, a report forwarded
//     inside another message (what the shared corpus calls "arf-embedded"),
//     or a multipart/report without feedback part whose origin comes from
//     the Subject or pasted headers (Exim's DMARC forensic reports).
//   - ClassJMRP: Microsoft's Junk Mail Reporting Program complaint, which is
//     not ARF: the origin comes from the Subject ("complaint about message
//     from <IP>"), the recipient from X-HmXmrOriginalRecipient. These facts
//     are recorded in Report.Inferred, never in the ARF fields.
//   - ClassNotReport: DSNs and bounces, auto-replies, unsubscribe requests,
//     forwards and plain mail. Ingest quarantines these instead of reporting.
//
// Report.Disposition then says what xarfd does with it, by feedback type:
// report (abuse, fraud, virus, or none stated), retract (not-spam, RFC
// 6430) or quarantine with a reason (auth-failure and DMARC forensic
// reports, RFC 6591; opt-out; other and unknown types; non-reports). A
// multipart/report without feedback part whose Subject names a DMARC
// forensic or failure report gets feedback-type auth-failure inferred.
//
// Parse returns an error only when there is nothing to read at all (empty
// input, no header).
//
// # Origin
//
// Report.Origin is Source-IP when it is an address. Otherwise it is
// inferred, and says how: from the embedded message's Received chain (the
// most recent hop whose client is public and not the reporting provider's
// own relay, judged by the report's From domain, Reporting-MTA and the
// provider's receiving host), or from the Subject. ParseReceived,
// ReceivedChain and FirstUntrusted are exported for spam-trap mail, which
// finds its origin the same way with a configured list of trusted relays.
//
// RecipientAddresses lists every address the report names as a recipient,
// for redaction. Build writes an RFC 5965 report that Parse reads back.
package arf
