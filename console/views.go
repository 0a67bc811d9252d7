package console

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/xarfd/xarfd/cases"
	"github.com/xarfd/xarfd/config"
	"github.com/xarfd/xarfd/ingest"
	"github.com/xarfd/xarfd/intel"
	"github.com/xarfd/xarfd/store"
)

// maxReason bounds the reason of an action, as the API does.
const maxReason = 1000

// reason reads the form's reason: required, on one line, bounded.
func reason(r *http.Request) (string, bool) {
	s := formLine(r, "reason")
	return s, s != "" && len(s) <= maxReason
}

// formLine is the form's field key on one line: runs of white space,
// line breaks included, become one space (a reason goes into logs and
// records that are read line by line).
func formLine(r *http.Request, key string) string {
	return strings.Join(strings.Fields(r.PostFormValue(key)), " ")
}

// back redirects after an action to the page it came from (the form's
// "back" field, a path of this site) with the result.
func back(w http.ResponseWriter, r *http.Request, fallback, done string) {
	to := r.PostFormValue("back")
	if !safeNext(to) {
		to = fallback
	}
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	http.Redirect(w, r, to+sep+"done="+done, http.StatusSeeOther)
}

// ---- outbox

type outboxData struct {
	Status   string
	Statuses []store.OutboxStatus
	Entries  []outboxRow
	Next     string
}

type outboxRow struct {
	*store.OutboxEntry
	CanRetry, CanCancel bool
}

// GET /outbox?status=&cursor=
func (c *Console) outbox(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &outboxData{Status: q.Get("status"), Statuses: store.OutboxStatuses}
	if d.Status != "" && !slices.Contains(store.OutboxStatuses, store.OutboxStatus(d.Status)) {
		c.fail(w, r, http.StatusBadRequest, "Unknown status", "Pick a status from the tabs of the outbox.")
		return
	}
	var before store.ID
	if cur := q.Get("cursor"); cur != "" {
		id, err := uuid.Parse(cur)
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, "Bad cursor", "Go back to the first page of the outbox.")
			return
		}
		before = id
	}
	es, next, err := c.o.Store.Outbox(store.OutboxStatus(d.Status), before, pageSize)
	if err != nil {
		c.internal(w, r, "listing outbox", err)
		return
	}
	for i := range es {
		e := &es[i]
		d.Entries = append(d.Entries, outboxRow{OutboxEntry: e, CanRetry: canRetry(e.Status), CanCancel: e.Status == store.OutboxPending})
	}
	if next != (store.ID{}) {
		d.Next = next.String()
	}
	c.render(w, r, http.StatusOK, "outbox", &page{Title: "Outbox", Nav: "outbox", Data: d})
}

// POST /outbox/{id}/retry|cancel: Options.Retry or Options.Cancel, as the
// API's actions.
func (c *Console) outboxAction(verb string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := c.pathID(w, r, "outbox entry")
		if !ok {
			return
		}
		v := viewerOf(r)
		e, err := c.o.Store.GetOutbox(id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !v.mayFeed(e.Channel)) {
			c.fail(w, r, http.StatusNotFound, "No such outbox entry", "There is no outbox entry with this id (or your token may not act on its channel).")
			return
		}
		if err != nil {
			c.internal(w, r, "reading outbox entry", err)
			return
		}
		why := verb + " requested in the console by " + v.by(r)
		if s := formLine(r, "reason"); s != "" {
			why += ": " + short(200, s)
		}
		now := c.o.Now().UTC()
		if verb == "retry" {
			e, err = c.o.Retry(r.Context(), id, now, why)
		} else {
			e, err = c.o.Cancel(r.Context(), id, now, why)
		}
		var te *store.TransitionError
		switch {
		case errors.As(err, &te):
			c.fail(w, r, http.StatusConflict, "Not possible now", "This entry is "+string(te.From)+" now: it cannot be "+map[string]string{"retry": "retried", "cancel": "cancelled"}[verb]+". Reload the outbox to see its state.")
			return
		case errors.Is(err, store.ErrNotFound):
			c.fail(w, r, http.StatusNotFound, "No such outbox entry", "The entry is gone (retention).")
			return
		case err != nil:
			c.internal(w, r, verb+" of outbox entry", err)
			return
		}
		c.o.Logger.Info().Str("id", id.String()).Str("action", verb).Str("status", string(e.Status)).Str("by", v.by(r)).Msg("console: outbox entry changed")
		back(w, r, "/outbox", map[string]string{"retry": "retried", "cancel": "cancelled"}[verb])
	}
}

// GET /outbox/{id}/message: the rendered (and signed) report as it was
// or would be sent, as plain text (never rendered as HTML).
func (c *Console) outboxMessage(w http.ResponseWriter, r *http.Request) {
	id, ok := c.pathID(w, r, "outbox entry")
	if !ok {
		return
	}
	raw, err := c.o.Store.OutboxMail(id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "No rendered message", "This entry has no rendered message (yet, or any more: it is kept for a while after sending).")
		return
	}
	if err != nil {
		c.internal(w, r, "reading a rendered message", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(raw)
}

// ---- quarantine

type quarantineData struct {
	Channel   string
	Channels  []string
	Rows      []store.QuarantinedMessage
	Next      string
	Reprocess bool
}

// GET /quarantine?channel=&cursor=
func (c *Console) quarantine(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &quarantineData{Channel: q.Get("channel"), Channels: c.channelNames(), Reprocess: c.o.Reprocess != nil}
	cur := q.Get("cursor")
	if len(cur) > store.MaxQuarantineCursor {
		c.fail(w, r, http.StatusBadRequest, "Bad cursor", "Go back to the first page of the quarantine.")
		return
	}
	rows, next, err := c.o.Store.QuarantinePage(d.Channel, cur, pageSize)
	if err != nil {
		c.internal(w, r, "listing quarantine", err)
		return
	}
	d.Rows, d.Next = rows, next
	c.render(w, r, http.StatusOK, "quarantine", &page{Title: "Quarantine", Nav: "quarantine", Data: d})
}

// POST /quarantine/{id}/reprocess: ingest.Ingester.Reprocess. A report
// made goes to its page; a message that still yields none stays with
// the new reason.
func (c *Console) reprocess(w http.ResponseWriter, r *http.Request) {
	id, ok := c.pathID(w, r, "quarantined message")
	if !ok {
		return
	}
	if c.o.Reprocess == nil {
		c.fail(w, r, http.StatusNotImplemented, "Not available", "This daemon cannot reprocess messages.")
		return
	}
	res, err := c.o.Reprocess(id)
	if c.quarantineError(w, r, "reprocessing a quarantined message", err) {
		return
	}
	c.o.Logger.Info().Str("id", id.String()).Bool("report", res.Report).Str("by", viewerOf(r).by(r)).Msg("console: quarantined message reprocessed")
	if res.Report {
		http.Redirect(w, r, "/reports/"+id.String()+"?done=reprocessed", http.StatusSeeOther)
		return
	}
	back(w, r, "/quarantine", "still")
}

// POST /quarantine/{id}/delete: Options.DeleteQuarantined.
func (c *Console) deleteQuarantined(w http.ResponseWriter, r *http.Request) {
	id, ok := c.pathID(w, r, "quarantined message")
	if !ok {
		return
	}
	if c.quarantineError(w, r, "deleting a quarantined message", c.o.DeleteQuarantined(id)) {
		return
	}
	c.o.Logger.Info().Str("id", id.String()).Str("by", viewerOf(r).by(r)).Msg("console: quarantined message deleted")
	back(w, r, "/quarantine", "deleted")
}

// quarantineError answers an error of a quarantine action, saying what
// the desk can do; false when err is nil.
func (c *Console) quarantineError(w http.ResponseWriter, r *http.Request, what string, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		c.fail(w, r, http.StatusNotFound, "No such message", "There is no quarantined message with this id: it was deleted, or it expired with its channel's retention.")
	case errors.Is(err, store.ErrNotQuarantined):
		c.fail(w, r, http.StatusConflict, "Not quarantined", "This message is not (or no longer) in the quarantine: another action took it out. Reload the quarantine.")
	case errors.Is(err, store.ErrUnreadableQuarantine):
		c.fail(w, r, http.StatusConflict, "Unreadable record", "This entry is a record this version could not read; it is kept for a later version. It cannot be reprocessed or deleted here.")
	case errors.Is(err, ingest.ErrWithheld):
		c.fail(w, r, http.StatusConflict, "Nothing to reprocess", "The message's body was not stored (its redaction could not be guaranteed): there is nothing to run again. Delete it when you no longer need its record.")
	case errors.Is(err, ingest.ErrNoChannel):
		c.fail(w, r, http.StatusConflict, "Channel gone", "The message's channel is no longer configured: put it back in the configuration to reprocess its messages.")
	case errors.Is(err, ingest.ErrUnredacted):
		c.fail(w, r, http.StatusConflict, "Stored unredacted", "The channel redacts now, but this message was stored before it did; reprocessing it would store recipient data in a report. Delete it instead.")
	default:
		c.internal(w, r, what, err)
	}
	return true
}

// ---- indicators

type indicatorsData struct {
	On     bool
	Kinds  []intel.Kind
	Kind   string
	Value  string
	Listed []listedKind
	Error  string
}

type listedKind struct {
	Kind   intel.Kind
	Values []string
	More   int
}

// maxListedShown bounds each kind's list of listed values on the page.
const maxListedShown = 200

// GET /indicators[?kind=&value=]: a lookup goes to the indicator's page.
func (c *Console) indicators(w http.ResponseWriter, r *http.Request) {
	d := &indicatorsData{On: c.o.Intel != nil, Kinds: intel.Kinds}
	if !d.On {
		c.render(w, r, http.StatusOK, "indicators", &page{Title: "Indicators", Nav: "indicators", Data: d})
		return
	}
	q := r.URL.Query()
	d.Kind, d.Value = q.Get("kind"), strings.TrimSpace(q.Get("value"))
	if d.Value != "" {
		k, ok := intel.ParseKind(d.Kind)
		if !ok {
			d.Error = "Pick a kind: ip, domain, url or email."
		} else {
			http.Redirect(w, r, "/indicators/"+string(k)+"/"+pathEscape(normalIndicator(k, d.Value)), http.StatusSeeOther)
			return
		}
	}
	for _, k := range intel.Kinds {
		vs := c.o.Intel.Listed(k)
		sort.Strings(vs)
		lk := listedKind{Kind: k, Values: vs}
		if len(vs) > maxListedShown {
			lk.Values, lk.More = vs[:maxListedShown], len(vs)-maxListedShown
		}
		d.Listed = append(d.Listed, lk)
	}
	code := http.StatusOK
	if d.Error != "" {
		code = http.StatusBadRequest
	}
	c.render(w, r, code, "indicators", &page{Title: "Indicators", Nav: "indicators", Data: d})
}

// normalIndicator is the stored form of a value, as the API reads it.
func normalIndicator(k intel.Kind, v string) string {
	switch k {
	case intel.KindIP:
		if a, err := netip.ParseAddr(v); err == nil {
			return a.Unmap().String()
		}
	case intel.KindDomain, intel.KindEmail:
		return strings.ToLower(v)
	}
	return v
}

type indicatorData struct {
	Kind, Value string
	Found       bool
	Ind         *store.IntelIndicator
	Status      intel.Status
}

// GET /indicators/{kind}/{value}
func (c *Console) indicator(w http.ResponseWriter, r *http.Request) {
	if c.o.Intel == nil {
		http.Redirect(w, r, "/indicators", http.StatusSeeOther)
		return
	}
	k, ok := intel.ParseKind(r.PathValue("kind"))
	if !ok {
		c.fail(w, r, http.StatusNotFound, "Unknown kind", "Indicators are of kind ip, domain, url or email.")
		return
	}
	v := normalIndicator(k, r.PathValue("value"))
	d := &indicatorData{Kind: string(k), Value: v}
	ind, st, err := c.o.Intel.Get(k, v)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.render(w, r, http.StatusNotFound, "indicator", &page{Title: "Indicator", Nav: "indicators", Data: d})
		return
	case err != nil:
		c.internal(w, r, "reading indicator", err)
		return
	}
	d.Found, d.Ind, d.Status = true, ind, st
	c.render(w, r, http.StatusOK, "indicator", &page{Title: "Indicator " + v, Nav: "indicators", Data: d})
}

// POST /indicators/{kind}/{value}/delist: intel.Service.Delist, as the
// API's DELETE.
func (c *Console) delist(w http.ResponseWriter, r *http.Request) {
	if c.o.Intel == nil {
		c.fail(w, r, http.StatusNotFound, "No indicators", "No channel uses intel.")
		return
	}
	k, ok := intel.ParseKind(r.PathValue("kind"))
	if !ok {
		c.fail(w, r, http.StatusNotFound, "Unknown kind", "Indicators are of kind ip, domain, url or email.")
		return
	}
	why, ok := reason(r)
	if !ok {
		c.fail(w, r, http.StatusBadRequest, "A reason is needed", "Say why it is delisted (at most 1000 characters): the reason is kept with the indicator.")
		return
	}
	v := normalIndicator(k, r.PathValue("value"))
	_, err := c.o.Intel.Delist(k, v, why, viewerOf(r).by(r))
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.fail(w, r, http.StatusNotFound, "No such indicator", "No report named it.")
		return
	case err != nil:
		c.internal(w, r, "delisting", err)
		return
	}
	c.o.Logger.Info().Str("kind", string(k)).Str("by", viewerOf(r).by(r)).Msg("console: indicator delisted")
	back(w, r, "/indicators/"+string(k)+"/"+pathEscape(v), "delisted")
}

// ---- cases

// casesOn: some channel uses own (own-network handling).
func casesOn(cfg *config.Config) bool {
	for i := range cfg.Channels {
		if cfg.Channels[i].Has(config.UseOwn) {
			return true
		}
	}
	return false
}

var caseStates = []string{store.CaseOpen, store.CaseNotified, store.CaseRestricted, store.CaseResolved}

type casesData struct {
	On     bool
	State  string
	States []string
	Cases  []store.Case
	// Next is the cursor of the next (older) page; empty on the last.
	Next string
}

// GET /cases?state=&cursor=
func (c *Console) cases(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &casesData{On: casesOn(c.cfg()), State: q.Get("state"), States: caseStates}
	if d.State != "" && !slices.Contains(caseStates, d.State) {
		c.fail(w, r, http.StatusBadRequest, "Unknown state", "Pick a state from the tabs.")
		return
	}
	cq := store.CaseQuery{State: d.State, Limit: pageSize}
	if cur := q.Get("cursor"); cur != "" {
		id, err := uuid.Parse(cur)
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, "Bad cursor", "Go back to the first page of the cases.")
			return
		}
		cq.Before = id
	}
	cs, next, err := c.o.Store.Cases(cq)
	if err != nil {
		c.internal(w, r, "listing cases", err)
		return
	}
	d.Cases = cs
	if next != (store.ID{}) {
		d.Next = next.String()
	}
	if len(d.Cases) > 0 || cq.Before != (store.ID{}) {
		d.On = true // cases of a channel that no longer uses own still show
	}
	c.render(w, r, http.StatusOK, "cases", &page{Title: "Cases", Nav: "cases", Data: d})
}

type caseData struct {
	Case    *store.Case
	Actions []string
	Running bool
}

// GET /cases/{id}
func (c *Console) caseView(w http.ResponseWriter, r *http.Request) {
	id, ok := c.pathID(w, r, "case")
	if !ok {
		return
	}
	cs, err := c.o.Store.GetCase(id)
	if errors.Is(err, store.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, "No such case", "There is no case with this id. Find cases in the list.")
		return
	}
	if err != nil {
		c.internal(w, r, "reading case", err)
		return
	}
	d := &caseData{Case: cs, Actions: caseActions(cs), Running: c.o.Cases != nil}
	c.render(w, r, http.StatusOK, "case", &page{Title: "Case " + cs.Key, Nav: "cases", Data: d})
}

// caseActions are the actions the cases service accepts on cs now (Act
// refuses the others with a conflict): a resolved case takes none, a
// restricted one (or one whose restrict call is still pending) cannot be
// restricted again.
func caseActions(cs *store.Case) []string {
	switch {
	case cs.State == store.CaseResolved:
		return nil
	case cs.State == store.CaseRestricted, cs.Webhook != nil && cs.Webhook.Status == cases.CallPending:
		return []string{"notify", "resolve"}
	}
	return []string{"notify", "restrict", "resolve"}
}

// POST /cases/{id}/notify|restrict|resolve: the cases service's Act, as
// the API's actions.
func (c *Console) caseAction(w http.ResponseWriter, r *http.Request) {
	id, ok := c.pathID(w, r, "case")
	if !ok {
		return
	}
	action := r.PathValue("action")
	if action != "notify" && action != "restrict" && action != "resolve" {
		c.fail(w, r, http.StatusNotFound, "No such action", "A case can be notified, restricted or resolved.")
		return
	}
	if c.o.Cases == nil {
		c.fail(w, r, http.StatusServiceUnavailable, "Cases are not running", "No channel uses own: add own to a channel's uses (docs/own-networks.md).")
		return
	}
	why, ok := reason(r)
	if !ok {
		c.fail(w, r, http.StatusBadRequest, "A reason is needed", "Say why (at most 1000 characters): the reason goes into the case's history.")
		return
	}
	_, err := c.o.Cases.Act(r.Context(), id, action, viewerOf(r).by(r), why)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.fail(w, r, http.StatusNotFound, "No such case", "There is no case with this id.")
		return
	case errors.Is(err, store.ErrConflict):
		c.fail(w, r, http.StatusConflict, "Not possible now", "The case's state does not allow this action. Reload the case to see its state.")
		return
	case err != nil:
		c.internal(w, r, "acting on case", err)
		return
	}
	c.o.Logger.Info().Str("id", id.String()).Str("action", action).Str("by", viewerOf(r).by(r)).Msg("console: case changed")
	back(w, r, "/cases/"+id.String(), action)
}

// ---- overview

type overviewData struct {
	Channels    []channelRow
	DryRun      bool
	Queue       int
	Failed      int
	Outbox      []outboxCount
	Quarantined int
	StoreBytes  int64
	Intel       bool
	Listed      int
	Cases       bool
	OpenCases   int
}

type outboxCount struct {
	Status string
	N      int
}

type channelRow struct {
	Name    string
	Kind    string
	Uses    string
	Records int
	Newest  time.Time
	// The last 24 hours' counters.
	Messages, Reports, Quarantined, Sent uint64
}

// GET /: one read of the store (store.Summary) and the blocklists.
func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	cfg := c.cfg()
	d := &overviewData{DryRun: !cfg.Reporter.Enabled, Intel: c.o.Intel != nil, Cases: casesOn(cfg)}
	var names []string
	for i := range cfg.Channels {
		names = append(names, cfg.Channels[i].Name)
	}
	sum, err := c.o.Store.Summary(names, c.o.Now().Add(-24*time.Hour).Truncate(time.Hour))
	if err != nil {
		c.internal(w, r, "summarising the store", err)
		return
	}
	for _, s := range sum.Channels {
		row := channelRow{Name: s.Name, Records: s.Records, Newest: s.Newest,
			Messages: s.Messages, Reports: s.Reports, Quarantined: s.Quarantined, Sent: s.Sent}
		if ch := cfg.Channel(s.Name); ch != nil {
			row.Kind = string(ch.Kind)
			var uses []string
			for _, u := range ch.Uses {
				uses = append(uses, string(u))
			}
			row.Uses = strings.Join(uses, ", ")
		} else {
			row.Kind = "not configured"
		}
		d.Channels = append(d.Channels, row)
	}
	for _, st := range store.OutboxStatuses {
		if n := sum.Outbox[st]; n > 0 {
			d.Outbox = append(d.Outbox, outboxCount{string(st), n})
		}
	}
	d.Queue = sum.Outbox[store.OutboxPending] + sum.Outbox[store.OutboxSending]
	d.Failed = sum.Outbox[store.OutboxFailed]
	d.Quarantined, d.StoreBytes, d.OpenCases = sum.Quarantined, sum.Bytes, sum.OpenCases
	if c.o.Intel != nil {
		for _, k := range intel.Kinds {
			d.Listed += len(c.o.Intel.Listed(k))
		}
	}
	c.render(w, r, http.StatusOK, "overview", &page{Title: "Overview", Nav: "overview", Data: d, Charts: true})
}
