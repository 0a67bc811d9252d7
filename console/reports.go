package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/xarfd/xarfd/store"
	"github.com/xarfd/xarfd/xarf"
)

// reportRow is one report as the listing shows it.
type reportRow struct {
	ID       string
	At       time.Time
	Channel  string
	Source   string
	Port     int
	Evidence string
	Origin   string
	From     string
	Subject  string
	Outbox   string
	// Fresh marks a row that arrived live.
	Fresh bool
}

// originTag returns how the origin was found, from the report's
// "origin:<method>" tag (xarf.Convert writes it).
func originTag(tags []string) string {
	for _, t := range tags {
		if m, ok := strings.CutPrefix(t, "origin:"); ok {
			return m
		}
	}
	return ""
}

// parseDoc reads the fields the console shows; evidence payloads are
// dropped right away.
func parseDoc(raw []byte) (*xarf.Report, error) {
	var d xarf.Report
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func rowOf(rep *store.Report, d *xarf.Report) reportRow {
	row := reportRow{ID: rep.ID.String(), At: store.IDTime(rep.ID).UTC(), Channel: rep.Channel}
	if d != nil {
		row.Source, row.Port, row.Evidence, row.From, row.Subject = d.SourceIdentifier, d.SourcePort, d.EvidenceSource, d.SMTPFrom, d.Subject
		row.Origin = originTag(d.Tags)
	}
	return row
}

// reportFilter is the listing's query, as the form sends it.
type reportFilter struct {
	Channel, SourceIP, Evidence, Method, Text, Period, From, Until, Cursor string

	// q is the store's query: the store filters on every field (the
	// document ones by a bounded scan, Query.Examine).
	q store.Query
	// Errors name the fields that could not be read.
	Errors []string
}

var periods = []struct{ Key, Label string }{
	{"", "any time"}, {"1h", "last hour"}, {"24h", "last 24 hours"}, {"168h", "last 7 days"}, {"720h", "last 30 days"},
}

// evidenceSources are the XARF evidence_source values xarfd writes.
var evidenceSources = []string{xarf.SourceSpamtrap, xarf.SourceUserComplaint, xarf.SourceAutomatedFilter}

// methods are how xarf.Convert finds an origin (its "origin:" tags); a
// method also matches its inferred form (store.Query.Method).
var methods = []struct{ Key, Label string }{
	{"smtp-peer", "the SMTP peer"}, {"received-chain", "the Received chain"}, {"inferred-received-chain", "a forwarded message's Received chain"},
	{"source-ip", "the report's Source-IP"}, {"jmrp-subject", "a JMRP complaint's Subject"}, {"subject", "the report's Subject"},
}

// formTime is the datetime-local form value, read as UTC.
const formTime = "2006-01-02T15:04"

func parseReportFilter(v url.Values, now time.Time) *reportFilter {
	f := &reportFilter{Channel: v.Get("channel"), SourceIP: strings.TrimSpace(v.Get("source_ip")), Evidence: v.Get("evidence"),
		Method: v.Get("method"), Text: strings.TrimSpace(v.Get("text")), Period: v.Get("period"), From: v.Get("from"),
		Until: v.Get("until"), Cursor: v.Get("cursor")}
	f.q.Channel = f.Channel
	if f.SourceIP != "" {
		if a, err := netip.ParseAddr(f.SourceIP); err == nil {
			f.q.SourceIP = a.Unmap()
		} else {
			f.Errors = append(f.Errors, "Source IP: not an IPv4 or IPv6 address")
		}
	}
	if f.Evidence != "" && !slices.Contains(evidenceSources, f.Evidence) {
		f.Errors = append(f.Errors, "Evidence source: unknown")
		f.Evidence = ""
	}
	f.q.EvidenceSource = f.Evidence
	if f.Method != "" && !slices.ContainsFunc(methods, func(m struct{ Key, Label string }) bool { return m.Key == f.Method }) {
		f.Errors = append(f.Errors, "Origin found by: unknown")
		f.Method = ""
	}
	f.q.Method = f.Method
	if f.Period != "" {
		if d, err := time.ParseDuration(f.Period); err == nil && slices.ContainsFunc(periods, func(p struct{ Key, Label string }) bool { return p.Key == f.Period }) {
			f.q.Since = now.Add(-d)
		} else {
			f.Errors = append(f.Errors, "Period: unknown")
			f.Period = ""
		}
	}
	if f.From != "" {
		if t, err := time.Parse(formTime, f.From); err == nil {
			if t.After(f.q.Since) {
				f.q.Since = t
			}
		} else {
			f.Errors = append(f.Errors, "From: want a date and time")
		}
	}
	if f.Until != "" {
		if t, err := time.Parse(formTime, f.Until); err == nil {
			f.q.Until = t
		} else {
			f.Errors = append(f.Errors, "Until: want a date and time")
		}
	}
	if f.Cursor != "" {
		if id, err := uuid.Parse(f.Cursor); err == nil {
			f.q.Before = id
		} else {
			f.Errors = append(f.Errors, "Cursor: not one this page made")
			f.Cursor = ""
		}
	}
	if len(f.Text) > maxText || !utf8.ValidString(f.Text) {
		f.Errors = append(f.Errors, "Text: at most 200 bytes of UTF-8")
		f.Text = ""
	}
	f.q.Text = f.Text
	return f
}

// maxText bounds the text filter (as the API's q).
const maxText = 200

// liveQuery is the query of the live stream: the filters without the
// cursor and the end of the period (new reports are after any until).
func (f *reportFilter) liveQuery() template.URL {
	q := url.Values{}
	for k, v := range map[string]string{"channel": f.Channel, "source_ip": f.SourceIP, "evidence": f.Evidence, "method": f.Method, "text": f.Text} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return template.URL(q.Encode())
}

type reportsData struct {
	F         *reportFilter
	Rows      []reportRow
	Channels  []string
	Periods   []struct{ Key, Label string }
	Methods   []struct{ Key, Label string }
	Evidences []string
	Next      string
	// Scanned is set when the scan limit stopped the search early.
	Scanned int
	// Live: the page is the newest (no later page, no until), so new
	// reports stream in; LiveQuery is the stream's query.
	Live      bool
	LiveQuery template.URL
}

func (c *Console) channelNames() []string {
	cfg := c.cfg()
	var out []string
	for i := range cfg.Channels {
		out = append(out, cfg.Channels[i].Name)
	}
	if stored, err := c.o.Store.ChannelNames(); err == nil {
		for _, n := range stored {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// GET /reports
func (c *Console) reports(w http.ResponseWriter, r *http.Request) {
	f := parseReportFilter(r.URL.Query(), c.o.Now())
	d := &reportsData{F: f, Channels: c.channelNames(), Periods: periods, Methods: methods, Evidences: evidenceSources}
	if f.Channel != "" && !slices.Contains(d.Channels, f.Channel) {
		f.Errors = append(f.Errors, "Channel: no such channel")
		f.Channel, f.q.Channel = "", ""
	}
	if len(f.Errors) == 0 {
		if err := c.fillReports(d); err != nil {
			c.internal(w, r, "listing reports", err)
			return
		}
	}
	if f.Cursor == "" && f.Until == "" && c.o.Hub != nil {
		d.Live, d.LiveQuery = true, f.liveQuery()
	}
	code := http.StatusOK
	if len(f.Errors) > 0 {
		code = http.StatusBadRequest
	}
	c.render(w, r, code, "reports", &page{Title: "Reports", Nav: "reports", Data: d})
}

// fillReports reads one page. With filters on the document the store
// examines at most scanLimit reports; when it stops there with fewer
// than a page, the page says so and continues from where it stopped.
func (c *Console) fillReports(d *reportsData) error {
	q := d.F.q
	q.Limit, q.Examine = pageSize, c.o.scan
	reps, next, err := c.o.Store.Reports(q)
	if err != nil {
		return err
	}
	for i := range reps {
		doc, _ := parseDoc(reps[i].XARF) // an unreadable document still lists, without its fields
		d.Rows = append(d.Rows, rowOf(&reps[i], doc))
	}
	if next != (store.ID{}) {
		d.Next = next.String()
		if len(reps) < pageSize {
			d.Scanned = c.o.scan
		}
	}
	return c.outboxStates(d.Rows)
}

// liveMatch reports whether a new report passes f: the store answers,
// with the same query narrowed to the report's millisecond, so that the
// live rows follow exactly the listing's rules.
func (c *Console) liveMatch(f *reportFilter, rep *store.Report) (bool, error) {
	if f.q.Channel != "" && rep.Channel != f.q.Channel {
		return false, nil
	}
	if f.q.SourceIP.IsValid() && rep.SourceIP != f.q.SourceIP {
		return false, nil
	}
	if f.q.Method == "" && f.q.EvidenceSource == "" && f.q.Text == "" {
		return true, nil
	}
	q := f.q
	q.Since = store.IDTime(rep.ID)
	q.Until, q.Before, q.Limit, q.Examine = q.Since.Add(time.Millisecond), store.ID{}, store.MaxLimit, 0
	reps, _, err := c.o.Store.Reports(q)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(reps, func(r store.Report) bool { return r.ID == rep.ID }), nil
}

// outboxStates fills each row's outbox status.
func (c *Console) outboxStates(rows []reportRow) error {
	for i := range rows {
		id, err := uuid.Parse(rows[i].ID)
		if err != nil {
			continue
		}
		e, err := c.o.Store.GetOutbox(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			rows[i].Outbox = "none"
		case err != nil:
			return err
		default:
			rows[i].Outbox = string(e.Status)
		}
	}
	return nil
}

// reportData is one report's page.
type reportData struct {
	ID       string
	At       time.Time
	Channel  string
	Via      string
	Doc      *xarf.Report
	Origin   string
	Document string
	Outbox   *store.OutboxEntry
	// History is the entry's attempts and decisions, oldest first.
	History store.AttemptHistory
	// CanRetry and CanCancel: the entry's status allows the action.
	CanRetry, CanCancel bool
	Evidence            bool
}

// GET /reports/{id}
func (c *Console) report(w http.ResponseWriter, r *http.Request) {
	id, ok := c.pathID(w, r, "report")
	if !ok {
		return
	}
	rep, err := c.o.Store.GetReport(id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "No such report", "There is no report with this id: it may have expired with its channel's retention. Find reports in the list.")
		return
	}
	if err != nil {
		c.internal(w, r, "reading report", err)
		return
	}
	d := &reportData{ID: id.String(), At: store.IDTime(id).UTC(), Channel: rep.Channel, Via: rep.Via}
	if doc, err := parseDoc(rep.XARF); err == nil {
		d.Doc = doc
		d.Origin = originTag(doc.Tags)
		for i := range doc.Evidence {
			d.Evidence = true
			if p := doc.Evidence[i].Payload; p != "" {
				doc.Evidence[i].Payload = "(" + itoa(len(p)) + " bytes of base64: the Evidence view shows the message)"
			}
		}
		if b, err := json.MarshalIndent(doc, "", "  "); err == nil {
			d.Document = string(b)
		}
	}
	if d.Document == "" {
		var buf bytes.Buffer
		if json.Indent(&buf, rep.XARF, "", "  ") == nil {
			d.Document = buf.String()
		} else {
			d.Document = string(rep.XARF)
		}
	}
	e, err := c.o.Store.GetOutbox(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		c.internal(w, r, "reading outbox entry", err)
		return
	default:
		d.Outbox = e
		d.CanRetry, d.CanCancel = canRetry(e.Status), e.Status == store.OutboxPending
		if d.History, err = c.o.Store.AttemptsOf(id); err != nil {
			c.internal(w, r, "reading outbox attempts", err)
			return
		}
	}
	if _, err := c.o.Store.Raw(id); err == nil {
		d.Evidence = true
	}
	c.render(w, r, http.StatusOK, "report", &page{Title: "Report " + d.ID, Nav: "reports", Data: d})
}

// canRetry mirrors store.Requeue's legal sources.
func canRetry(s store.OutboxStatus) bool {
	switch s {
	case store.OutboxFailed, store.OutboxWithheld, store.OutboxDryRun, store.OutboxCancelled, store.OutboxPending:
		return true
	}
	return false
}

// pathID reads {id}; a malformed id is simply not found.
func (c *Console) pathID(w http.ResponseWriter, r *http.Request, what string) (store.ID, bool) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		c.fail(w, r, http.StatusNotFound, "No such "+what, "This is not the id of a "+what+". Go back to the list.")
		return store.ID{}, false
	}
	return id, true
}
