package xarf

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// ValidationError lists every reason a document was rejected, one sentence
// each, in a stable order. The HTTP API returns Reasons on a 400.
type ValidationError struct {
	Reasons []string
}

func (e *ValidationError) Error() string {
	if len(e.Reasons) == 1 {
		return "xarf: invalid document: " + e.Reasons[0]
	}
	return fmt.Sprintf("xarf: invalid document (%d reasons): %s", len(e.Reasons), strings.Join(e.Reasons, "; "))
}

func newEvidence(contentType, desc string, data []byte) Evidence {
	sum := sha256.Sum256(data)
	n := int64(len(data))
	return Evidence{
		ContentType: contentType,
		Description: truncRunes(desc, maxEvidenceDesc),
		Payload:     base64String(data),
		Hash:        "sha256:" + hex.EncodeToString(sum[:]),
		Size:        &n,
	}
}

// base64String is base64.StdEncoding.EncodeToString with one allocation
// instead of two (EncodeToString encodes into a slice, then copies it
// into the string), and evidence is the whole message.
func base64String(data []byte) string {
	var sb strings.Builder
	sb.Grow(base64.StdEncoding.EncodedLen(len(data)))
	var buf [4 << 10]byte
	const step = len(buf) / 4 * 3 // whole 3-byte groups: padding only at the end
	for len(data) > 0 {
		k := min(step, len(data))
		n := base64.StdEncoding.EncodedLen(k)
		base64.StdEncoding.Encode(buf[:n], data[:k])
		sb.Write(buf[:n])
		data = data[k:]
	}
	return sb.String()
}

// Validate checks what the JSON schema cannot express. It does not repeat
// the schema (use Validator for that) and assumes nothing about the
// category beyond what each check names:
//
//   - a messaging report with protocol smtp has smtp_from and source_port
//     (the spam schema says so, bulk_messaging's does not);
//   - smtp_from and smtp_to are not redaction placeholders (@redacted.invalid);
//   - source_identifier is not empty and has no white space; for messaging
//     it is an IP address or a host name;
//   - every evidence payload is strict, padded base64, its decoded size is at
//     most MaxEvidenceSize and equals size when given, and hash (md5, sha1,
//     sha256, sha512) has the algorithm's length and matches the payload;
//   - first_seen is not after last_seen.
//
// The error is a *ValidationError with every reason.
func Validate(doc []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		return &ValidationError{Reasons: []string{"not a JSON object: " + err.Error()}}
	}
	if m == nil {
		return &ValidationError{Reasons: []string{"not a JSON object: null"}}
	}
	var reasons []string
	bad := func(format string, args ...any) { reasons = append(reasons, fmt.Sprintf(format, args...)) }
	str := func(k string) (string, bool) {
		raw, ok := m[k]
		if !ok {
			return "", false
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}

	category, _ := str("category")
	if proto, _ := str("protocol"); category == CategoryMessaging && proto == ProtocolSMTP {
		if _, ok := m["smtp_from"]; !ok {
			bad("protocol is smtp but smtp_from is missing (use protocol other when the envelope sender is unknown)")
		}
		if _, ok := m["source_port"]; !ok {
			bad("protocol is smtp but source_port is missing (use protocol other when the port is unknown)")
		}
	}
	for _, k := range []string{"smtp_from", "smtp_to"} {
		if v, ok := str(k); ok && isPlaceholder(v) {
			bad("%s is a redaction placeholder, not an address: leave the field out instead", k)
		}
	}
	if v, ok := str("source_identifier"); ok {
		switch {
		case strings.TrimSpace(v) == "":
			bad("source_identifier is empty")
		case strings.ContainsAny(v, " \t\r\n"):
			bad("source_identifier contains white space")
		case category == CategoryMessaging:
			if _, err := netip.ParseAddr(v); err != nil && !validHostname(v) {
				bad("source_identifier %q is neither an IP address nor a host name", truncRunes(v, 64))
			}
		}
	}
	if raw, ok := m["evidence"]; ok {
		var items []map[string]json.RawMessage
		if json.Unmarshal(raw, &items) == nil {
			for i, it := range items {
				checkEvidence(i, it, bad)
			}
		}
	}
	first, okF := str("first_seen")
	last, okL := str("last_seen")
	if okF && okL {
		tf, e1 := time.Parse(time.RFC3339Nano, first)
		tl, e2 := time.Parse(time.RFC3339Nano, last)
		if e1 == nil && e2 == nil && tf.After(tl) {
			bad("first_seen %s is after last_seen %s", first, last)
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	sort.Strings(reasons)
	return &ValidationError{Reasons: reasons}
}

var hashes = map[string]struct {
	new  func() hash.Hash
	size int
}{
	"md5": {md5.New, md5.Size}, "sha1": {sha1.New, sha1.Size},
	"sha256": {sha256.New, sha256.Size}, "sha512": {sha512.New, sha512.Size},
}

func checkEvidence(i int, it map[string]json.RawMessage, bad func(string, ...any)) {
	var payload string
	if json.Unmarshal(it["payload"], &payload) != nil {
		return // the schema reports a missing or non-string payload
	}
	data, err := base64.StdEncoding.Strict().DecodeString(payload)
	if err != nil {
		bad("evidence[%d].payload is not valid base64: %v", i, err)
		return
	}
	if len(data) > MaxEvidenceSize {
		bad("evidence[%d] is %d bytes decoded, above the limit of %d per item", i, len(data), MaxEvidenceSize)
	}
	if raw, ok := it["size"]; ok {
		var n int64
		if json.Unmarshal(raw, &n) == nil && n != int64(len(data)) {
			bad("evidence[%d].size is %d but the payload decodes to %d bytes", i, n, len(data))
		}
	}
	var h string
	if json.Unmarshal(it["hash"], &h) != nil {
		return
	}
	alg, hexv, ok := strings.Cut(h, ":")
	spec, known := hashes[alg]
	if !ok || !known {
		return // the schema's pattern reports it
	}
	want, err := hex.DecodeString(hexv)
	if err != nil || len(want) != spec.size {
		bad("evidence[%d].hash has %d hex digits, %s needs %d", i, len(hexv), alg, 2*spec.size)
		return
	}
	hh := spec.new()
	hh.Write(data)
	if !bytes.Equal(hh.Sum(nil), want) {
		bad("evidence[%d].hash does not match the payload (%s of the decoded payload differs)", i, alg)
	}
}

// isUUID accepts the 8-4-4-4-12 hex form (the schema's "uuid" format).
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// validHostname follows the schema's "hostname" format: at most 253
// characters, labels of 1 to 63 letters, digits and hyphens, not starting
// or ending with a hyphen.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) < 1 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validEmail follows the schema's "email" format as the validator checks
// it: local part of at most 64 characters (dot-atom, or quoted without
// backslash or quote), domain a host name or an address literal.
func validEmail(s string) bool {
	if len(s) > 254 {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > 64 {
		return false
	}
	if len(local) > 1 && local[0] == '"' && local[len(local)-1] == '"' {
		if strings.ContainsAny(local[1:len(local)-1], `\"`) {
			return false
		}
	} else {
		if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
			return false
		}
		for i := 0; i < len(local); i++ {
			c := local[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".!#$%&'*+-/=?^_`{|}~", c) >= 0) {
				return false
			}
		}
	}
	if len(domain) > 2 && domain[0] == '[' && domain[len(domain)-1] == ']' {
		lit := domain[1 : len(domain)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			a, err := netip.ParseAddr(v6)
			return err == nil && a.Is6() && a.Zone() == ""
		}
		a, err := netip.ParseAddr(lit)
		return err == nil && a.Is4()
	}
	return validHostname(domain)
}
