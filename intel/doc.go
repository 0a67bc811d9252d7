// Package intel mines indicators of compromise from the stored (already
// redacted) reports of channels whose uses include intel, keeps their hits
// in the store, decides what is listed, and publishes the listed ones as
// DNS blocklists (RFC 5782), rbldnsd export files and HTTP feeds.
//
// Nothing that names a recipient of the channel ever becomes an indicator:
// recipient addresses and their domains, trap and redacted domains, the
// redaction placeholders, our own names and networks, reserved addresses
// and names, and the allowlist are removed at extraction, so that no zone,
// feed or API answer can be used to probe for a trap. See docs/intel.md.
package intel
