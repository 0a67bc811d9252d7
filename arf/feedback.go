package arf

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

// knownFields are the field names of RFC 5965, 6591, 6692 and the pre-RFC
// drafts, canonicalised; used to split single-line feedback parts.
var knownFields = []string{
	"feedback-type", "user-agent", "version", "arrival-date", "received-date", "source-ip", "source-port",
	"original-mail-from", "original-rcpt-to", "original-envelope-id", "reported-domain", "reported-uri",
	"authentication-results", "incidents", "reporting-mta", "auth-failure", "delivery-result",
	"dkim-domain", "dkim-identity", "dkim-selector", "dkim-canonicalized-header", "dkim-canonicalized-body",
	"spf-dns", "identity-alignment", "removal-recipient",
}

var singleLineSplit = regexp.MustCompile(`(?i)(?:^|[\s;,]+)(` + strings.Join(escapeAll(knownFields), "|") + `)\s*:`)

func escapeAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ReplaceAll(regexp.QuoteMeta(n), "-", "[-_]")
	}
	return out
}

// parseFeedbackFields reads the body of a feedback part. Besides the RFC
// form it accepts YAML-style bodies ("---" marker, uniform indentation,
// quoted values, "- item" lists, '#' comments) and everything written on a
// single line.
func parseFeedbackFields(body []byte, mediaType string, w *warnings) []Field {
	body = bytes.TrimLeft(body, " \t\n")
	if isYAML(body, mediaType) {
		w.add(WarnYAML, "feedback part is YAML-style, not RFC 5322 fields")
		return parseYAMLFields(body)
	}
	h, rest := parseHeader(body, w)
	fields := []Field(h)
	if len(bytes.TrimSpace(rest)) > 0 && len(fields) > 0 {
		w.add(WarnHeaderSyntax, "text after the feedback fields ignored")
	}
	if bytes.Count(bytes.TrimSpace(body), []byte{'\n'}) == 0 && len(fields) == 1 {
		if split := splitSingleLine(fields[0].Name + ": " + fields[0].Value); len(split) > 1 {
			w.add(WarnSingleLine, "all %d feedback fields on one line", len(split))
			return split
		}
	}
	return fields
}

func isYAML(body []byte, mediaType string) bool {
	if strings.Contains(mediaType, "yaml") || bytes.HasPrefix(body, []byte("---")) {
		return true
	}
	// Indented first line: RFC 5322 fields never start with white space.
	return len(body) > 0 && isWSP(body[0])
}

func parseYAMLFields(body []byte) []Field {
	var out []Field
	indent := -1
	last := -1
	pos := 0
	for pos < len(body) {
		line, next := nextLine(body, pos)
		pos = next
		s := string(line)
		t := strings.TrimSpace(s)
		if t == "" || t == "---" || t == "..." || strings.HasPrefix(t, "#") {
			continue
		}
		ind := len(s) - len(strings.TrimLeft(s, " \t"))
		if indent < 0 {
			indent = ind
		}
		if strings.HasPrefix(t, "- ") || t == "-" {
			if last >= 0 {
				item := unquoteYAML(strings.TrimSpace(strings.TrimPrefix(t, "-")))
				if out[last].Value == "" {
					out[last].Value = item
				} else {
					out = append(out, Field{Name: out[last].Name, Value: item})
					last = len(out) - 1
				}
			}
			continue
		}
		name, val, ok := strings.Cut(t, ":")
		if ind > indent && last >= 0 || !ok || strings.ContainsAny(name, " \t") {
			if last >= 0 {
				out[last].Value = strings.TrimSpace(out[last].Value + " " + t)
			}
			continue
		}
		out = append(out, Field{Name: strings.Trim(strings.TrimSpace(name), `"'`), Value: unquoteYAML(strings.TrimSpace(val))})
		last = len(out) - 1
	}
	return out
}

func unquoteYAML(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		if v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
		return v[1 : len(v)-1]
	}
	return v
}

func splitSingleLine(s string) []Field {
	locs := singleLineSplit.FindAllStringSubmatchIndex(s, -1)
	if len(locs) < 2 {
		return nil
	}
	var out []Field
	for i, l := range locs {
		nameStart, nameEnd, valStart := l[2], l[3], l[1]
		valEnd := len(s)
		if i+1 < len(locs) {
			valEnd = locs[i+1][0]
		}
		v := strings.TrimSpace(s[valStart:valEnd])
		out = append(out, Field{Name: s[nameStart:nameEnd], Value: strings.TrimRight(v, ";,")})
	}
	return out
}

var registeredTypes = map[string]bool{
	"abuse": true, "fraud": true, "virus": true, "other": true, "not-spam": true, "auth-failure": true,
	// pre-RFC draft types and the XARF-over-ARF carrier
	"opt-out": true, "opt-out-list": true, "miscategorized": true, "dmarc": true, "xarf": true,
}

// single-valued fields: a repeat is a deviation and the first value wins.
var singleValued = map[string]bool{
	"feedback-type": true, "user-agent": true, "version": true, "arrival-date": true, "received-date": true,
	"source-ip": true, "source-port": true, "original-mail-from": true, "original-envelope-id": true,
	"incidents": true, "reporting-mta": true, "auth-failure": true, "delivery-result": true,
	"dkim-domain": true, "dkim-identity": true, "dkim-selector": true, "dkim-canonicalized-header": true,
	"dkim-canonicalized-body": true, "identity-alignment": true,
}

// applyFields fills the typed slots of r from the feedback fields.
func (r *Report) applyFields(fields []Field, w *warnings) {
	r.Fields = fields
	seen := map[string]bool{}
	var received *Date
	for _, f := range fields {
		c := canonName(f.Name)
		v := f.Value
		if singleValued[c] {
			if seen[c] {
				w.add(WarnDuplicateField, "%s repeated; first value kept", f.Name)
				continue
			}
			seen[c] = true
		}
		if v == "" && c != "original-mail-from" {
			w.add(WarnEmptyField, "%s is empty", f.Name)
		}
		switch c {
		case "feedback-type":
			r.FeedbackType = strings.ToLower(v)
			if !registeredTypes[r.FeedbackType] {
				w.add(WarnFeedbackType, "unregistered Feedback-Type %q", truncateForText([]byte(v)))
			}
		case "user-agent":
			r.UserAgent = v
		case "version":
			r.Version = v
			if v != "1" {
				w.add(WarnVersion, "Version %q (RFC 5965 says 1)", truncateForText([]byte(v)))
			}
		case "arrival-date":
			r.ArrivalDate = r.date(f, w)
		case "received-date":
			received = r.date(f, w)
		case "source-ip":
			r.SourceIP = sourceIP(v, w)
		case "source-port":
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				w.add(WarnSourcePort, "Source-Port %q is not a port", truncateForText([]byte(v)))
			} else {
				r.SourcePort = p
			}
		case "original-mail-from":
			r.OriginalMailFrom = v
		case "original-rcpt-to":
			r.OriginalRcptTo = append(r.OriginalRcptTo, v)
		case "original-envelope-id":
			r.OriginalEnvelopeID = v
		case "reported-domain":
			r.ReportedDomain = append(r.ReportedDomain, v)
		case "reported-uri":
			r.ReportedURI = append(r.ReportedURI, v)
		case "authentication-results":
			r.AuthenticationResults = append(r.AuthenticationResults, v)
		case "incidents":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				w.add(WarnIncidents, "Incidents %q is not a positive integer", truncateForText([]byte(v)))
			} else {
				r.Incidents = n
			}
		case "reporting-mta":
			r.ReportingMTA = v
		case "auth-failure":
			r.AuthFailure = v
		case "delivery-result":
			r.DeliveryResult = v
		case "dkim-domain":
			r.DKIMDomain = v
		case "dkim-identity":
			r.DKIMIdentity = v
		case "dkim-selector":
			r.DKIMSelector = v
		case "dkim-canonicalized-header":
			r.DKIMCanonicalizedHeader = strings.Join(strings.Fields(v), "")
		case "dkim-canonicalized-body":
			r.DKIMCanonicalizedBody = strings.Join(strings.Fields(v), "")
		case "spf-dns":
			r.SPFDNS = append(r.SPFDNS, v)
		case "identity-alignment":
			r.IdentityAlignment = v
		case "removal-recipient":
			r.RemovalRecipient = append(r.RemovalRecipient, v)
		default:
			r.Unknown = append(r.Unknown, f)
		}
	}
	if r.ArrivalDate == nil && received != nil {
		r.ArrivalDate = received
		w.add(WarnReceivedDate, "pre-RFC Received-Date used instead of Arrival-Date")
	}
	for _, req := range []string{"Feedback-Type", "User-Agent", "Version"} {
		if !seen[canonName(req)] {
			w.add(WarnMissingField, "required field %s is missing", req)
		}
	}
	if r.FeedbackType == "auth-failure" && !seen["auth-failure"] {
		w.add(WarnMissingField, "auth-failure report without Auth-Failure (RFC 6591)")
	}
}

func (r *Report) date(f Field, w *warnings) *Date {
	d := &Date{Field: canonicalDateField(f.Name), Raw: f.Value}
	t, dateOnly, zoneAssumed, ok := ParseDate(f.Value)
	if !ok {
		w.add(WarnDate, "%s %q not understood", f.Name, truncateForText([]byte(f.Value)))
		return d
	}
	d.Time, d.Parsed, d.DateOnly, d.ZoneAssumed = t, true, dateOnly, zoneAssumed
	if dateOnly {
		w.add(WarnDate, "%s %q has no time of day; midnight UTC assumed", f.Name, truncateForText([]byte(f.Value)))
	} else if zoneAssumed {
		w.add(WarnDate, "%s %q has no usable time zone; UTC assumed", f.Name, truncateForText([]byte(f.Value)))
	}
	return d
}

func canonicalDateField(name string) string {
	if canonName(name) == "received-date" {
		return "Received-Date"
	}
	return "Arrival-Date"
}

func sourceIP(v string, w *warnings) *IP {
	ip := &IP{Raw: v}
	a, port, comment, cleaned := ParseIP(v)
	ip.Comment = comment
	if !a.IsValid() {
		w.add(WarnSourceIP, "Source-IP %q is not an IP address; kept as written", truncateForText([]byte(v)))
		return ip
	}
	ip.Addr = a
	if cleaned || port != 0 {
		w.add(WarnSourceIP, "Source-IP %q needed cleaning to %s", truncateForText([]byte(v)), a)
	}
	return ip
}
