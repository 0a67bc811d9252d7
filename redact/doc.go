// Package redact removes recipient data from a message, in every form a
// reader could recover it from, before anything else in xarfd sees it.
//
// A trap address that leaks is dropped from the spammer's list, and a
// complainant's address is personal data. Editing the To: field is not
// enough: unsubscribe links carry the address base64-encoded or hashed,
// quoted-printable splits it across lines, Received fields carry it in
// "for" clauses. So the package works on the whole message.
//
// # What is redacted
//
// The set of addresses of one Apply call is the policy's Addresses, the
// addresses passed to Apply (the caller passes the envelope recipients and
// MessageRecipients of the message, and for ARF the Original-Rcpt-To and the
// embedded message's recipients), and every address found anywhere in the
// message at one of the policy's Domains or their subdomains. For each, in
// every header field, preamble, epilogue and body part at any depth
// (multipart, message/rfc822, text/rfc822-headers, message/feedback-report
// ...), these forms are replaced:
//
//   - the address as text, in any ASCII case;
//   - behind quoted-printable escapes and soft line breaks (=40, =\n), URL
//     percent-encoding (%40, or every byte escaped, any hex case), HTML
//     character references (&#64;), and header folding, in any mix and
//     each applied up to twice (QP of QP, %2540);
//   - inside RFC 2047 encoded words, B or Q, in any charset go-message
//     decodes, also split over adjacent words: the run of words is replaced
//     by UTF-8 encoded words of the redacted text;
//   - inside base64 MIME parts of any type: the part is decoded, redacted
//     and re-encoded with the same line length and line ending;
//   - base64 and base64url of the address at any of the three byte
//     alignments inside a larger blob, padded or not (tokens in URLs and
//     List-Unsubscribe): only the quanta carrying the address are rewritten;
//   - hex of the address, md5, sha1 and sha256 hex digests of it (either
//     hex case);
//   - in UTF-16 text: a part declared UTF-16 is transcoded to UTF-8,
//     redacted in every form above and transcoded back; undeclared UTF-16
//     is searched for the address itself;
//   - with Policy.LocalPart, the local part standing alone as a word;
//   - host names at one of the policy's Domains (the domain itself or a
//     subdomain, "by mx.trap.example" in a Received field), standing as a
//     whole name, in every form above: they name the trap domain too. They
//     are replaced by the name redacted.invalid, or r-<12 hex>.redacted.invalid
//     in ModeHMAC, so the field stays valid.
//
// Only the address is replaced, never its surroundings: in a URL the host,
// path and other parameters stay byte for byte (an address at a configured
// domain inside a path or query starts after the last '/', '?', '#', '&' or
// '='). Whole addresses are replaced in every rendering before local parts
// and host names, which are parts of them.
//
// Hex, digest and base64 forms are computed from the lower-cased address
// and from every spelling of it the message itself writes (or the caller
// gave). The replacement is TokenAddress (ModeToken) or a keyed pseudonym
// r-<12 hex of HMAC-SHA256(key, lower-cased address)>@redacted.invalid
// (ModeHMAC). A form is replaced by the same form of the replacement: a
// digest by the digest of the replacement (same length), base64 by base64
// of the replacement (whose local part may carry a few filler letters,
// so that the rest of the blob keeps its alignment and every
// character after it stays unchanged), a URL-encoded address by the
// URL-encoded replacement, and so on.
//
// # Guarantees
//
// The output has the same MIME structure: the same part tree, boundaries,
// content types and transfer encodings; bytes outside replaced occurrences
// are unchanged, including everything the package cannot parse. Apply
// prepends one header field,
//
//	X-Xarfd-Redacted: <hostname>; mode=<token|hmac>; forms=<summary>
//
// where summary is Summary.String ("literal:2,url:1", or "none"); the
// hostname is replaced as a host name is when it is at a configured domain. The
// field is added even when nothing was found: it records that this host
// checked the message under its policy. A DKIM signature over a changed
// message no longer verifies, and the field tells a reader why.
//
// After rewriting, an independent pass searches the whole output, every
// header field, every encoded-word run and every part (base64 decoded
// leniently, so malformed base64 is looked into too) for every needle and
// for any address at a configured domain. If anything survives (an address
// in a MIME boundary, in base64 that cannot be decoded strictly, deeper
// nesting than the package follows), Apply returns an error wrapping
// ErrUnredactable and no message: the caller quarantines the original and
// must not store or show it. Error texts and Summary never contain an
// address or any part of one.
//
// # Cost
//
// New compiles the policy: the configured addresses and domains, all their
// needles and an Aho-Corasick automaton over them are built once, and a
// configuration reload builds a new Redactor. Apply adds only the message's
// own addresses and host names, whose needles are filed in a hash matcher
// (a few table inserts each; see match.go), together with a small static
// set, so that each text and decoded view is scanned once. Buffers are
// reused through a pool inside the Redactor. The output is written once;
// body texts over 64 KB are redacted and rendered piece by piece, so a
// large message costs about one copy of itself. Work is linear in the size
// of the message whatever it holds: needle sets the hash matcher cannot
// keep apart go to an automaton.
//
// # Limits
//
// Not found: addresses in compressed or otherwise encoded attachments (zip,
// PDF streams), in charsets that are not ASCII-compatible other than UTF-16
// (UTF-32, EBCDIC; UTF-16 only when declared on a part that is not
// quoted-printable), escapes applied three times or more, whitespace or comments
// inside an address (obsolete "a @ b" syntax), digests of other spellings
// (trailing newline, upper case not written in the message), digests or
// base64 of addresses and host names at configured domains that appear
// nowhere in a readable form, local parts in encoded forms, and non-ASCII case variants
// of internationalised addresses. Base64 of very short addresses (fewer than
// six stable characters at an alignment) is not searched at that alignment.
// An address at a configured domain whose local part itself holds '/' or
// '?' and one of '/', '?', '#', '&', '=' is taken to start after the last
// of these (in a URL that is where it starts), so the part before stays.
// Replacing inside a binary attachment corrupts the attachment; leaking is
// worse.
package redact
