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
	Channel, SourceIP, Evidence, Text, Period, From, Until, Cursor string

	q    store.Query
	text string
	// Errors name the fields that could not be read.
	Errors []string
}

var periods = []struct{ Key, Label string }{
	{"", "any time"}, {"1h", "last hour"}, {"24h", "last 24 hours"}, {"168h", "last 7 days"}, {"720h", "last 30 days"},
}

// evidenceSources are the XARF evidence_source values xarfd writes.
var evidenceSources = []string{xarf.SourceSpamtrap, xarf.SourceUserComplaint, xarf.SourceAutomatedFilter}

// formTime is the datetime-local form value, read as UTC.
const formTime = "2006-01-02T15:04"

func parseReportFilter(v url.Values, now time.Time) *reportFilter {
	f := &reportFilter{Channel: v.Get("channel"), SourceIP: strings.TrimSpace(v.Get("source_ip")), Evidence: v.Get("evidence"),
		Text: strings.TrimSpace(v.Get("text")), Period: v.Get("period"), From: v.Get("from"), Until: v.Get("until"), Cursor: v.Get("cursor")}
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
	if len(f.Text) > 200 {
		f.Text = f.Text[:200]
	}
	f.text = strings.ToLower(f.Text)
	return f
}

// match applies the filters the store's indexes do not (Query does the
// channel, the source IP and the time).
func (f *reportFilter) match(rep *store.Report, d *xarf.Report) bool {
	if f.q.Channel != "" && rep.Channel != f.q.Channel {
		return false
	}
	if f.q.SourceIP.IsValid() && rep.SourceIP != f.q.SourceIP {
		return false
	}
	if t := store.IDTime(rep.ID); (!f.q.Since.IsZero() && t.Before(f.q.Since)) || (!f.q.Until.IsZero() && !t.Before(f.q.Until)) {
		return false
	}
	if f.Evidence != "" && (d == nil || d.EvidenceSource != f.Evidence) {
		return false
	}
	if f.text != "" {
		if d == nil {
			return false
		}
		hay := []string{rep.ID.String(), d.SourceIdentifier, d.SMTPFrom, d.Subject, d.MessageID, d.Description, d.SenderName, strings.Join(d.Tags, " ")}
		if d.Reporter != nil {
			hay = append(hay, d.Reporter.Org)
		}
		if !slices.ContainsFunc(hay, func(s string) bool { return strings.Contains(strings.ToLower(s), f.text) }) {
			return false
		}
	}
	return true
}

// postFilter: the listing has to read reports past the page to fill it.
func (f *reportFilter) postFilter() bool { return f.Evidence != "" || f.text != "" }

// liveQuery is the query of the live stream: the filters without the
// cursor and the end of the period (new reports are after any until).
func (f *reportFilter) liveQuery() template.URL {
	q := url.Values{}
	for k, v := range map[string]string{"channel": f.Channel, "source_ip": f.SourceIP, "evidence": f.Evidence, "text": f.Text} {
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
	d := &reportsData{F: f, Channels: c.channelNames(), Periods: periods, Evidences: evidenceSources}
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

func (c *Console) fillReports(d *reportsData) error {
	f := d.F
	q := f.q
	scanned := 0
	for {
		q.Limit = pageSize
		if f.postFilter() {
			q.Limit = 200
		}
		reps, next, err := c.o.Store.Reports(q)
		if err != nil {
			return err
		}
		for i := range reps {
			rep := &reps[i]
			scanned++
			doc, _ := parseDoc(rep.XARF) // an unreadable document still lists, without its fields
			if f.match(rep, doc) {
				d.Rows = append(d.Rows, rowOf(rep, doc))
				if len(d.Rows) == pageSize {
					if i < len(reps)-1 || next != (store.ID{}) {
						d.Next = rep.ID.String()
					}
					return c.outboxStates(d.Rows)
				}
			}
			if scanned >= scanLimit {
				if i < len(reps)-1 || next != (store.ID{}) {
					d.Next, d.Scanned = rep.ID.String(), scanned
				}
				return c.outboxStates(d.Rows)
			}
		}
		if next == (store.ID{}) {
			return c.outboxStates(d.Rows)
		}
		q.Before = next
	}
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
