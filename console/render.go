package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// page is what the layout renders around a view.
type page struct {
	Title string
	// Nav names the active section of the navigation.
	Nav string
	Who *viewer
	// Flash is a one-line result of the last action.
	Flash string
	Data  any
	// Charts loads uPlot (the overview only).
	Charts bool

	viewer *viewer
}

type pages struct {
	t map[string]*template.Template
	// rows renders the partials sent alone (live report rows).
	rows *template.Template
}

var funcs = template.FuncMap{
	"tm":       timeHTML,
	"pesc":     url.PathEscape,
	"short":    short,
	"join":     strings.Join,
	"bytes":    humanBytes,
	"int64":    func(i int) int64 { return int64(i) },
	"navItems": func() []navItem { return nav },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"query": func(kv ...string) template.URL {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				q.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(q.Encode())
	},
}

type navItem struct{ Key, Label, Href string }

var nav = []navItem{
	{"overview", "Overview", "/"}, {"reports", "Reports", "/reports"}, {"quarantine", "Quarantine", "/quarantine"},
	{"outbox", "Outbox", "/outbox"}, {"indicators", "Indicators", "/indicators"}, {"cases", "Cases", "/cases"},
}

func pathEscape(s string) string { return url.PathEscape(s) }

func parsePages() (*pages, error) {
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("console: parsing the layout: %w", err)
	}
	p := &pages{t: map[string]*template.Template{}, rows: base}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console: parsing %s: %w", n, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// render executes view into a buffer first, so that a template error
// answers 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, view string, p *page) {
	if p.viewer != nil {
		p.Who = p.viewer
	}
	if p.Who == nil {
		p.Who = viewerOf(r)
	}
	if p.Flash == "" {
		p.Flash = flashText(r.URL.Query().Get("done"))
	}
	t := c.pages.t[view]
	var buf bytes.Buffer
	if t == nil {
		c.o.Logger.Error().Str("view", view).Msg("console: no such template")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.o.Logger.Error().Err(err).Str("view", view).Msg("console: rendering")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// flashes are the results an action redirects with (?done=…): fixed
// texts, so that a link cannot make the page say anything else.
var flashes = map[string]string{
	"retried":     "The outbox entry is pending again and will be tried now.",
	"cancelled":   "The outbox entry is cancelled: it will not be sent.",
	"reprocessed": "The quarantined message went through ingest again and is this report now.",
	"deleted":     "The quarantined message is deleted.",
	"delisted":    "The indicator is delisted; only new hits list it again.",
	"notify":      "The subscriber will be notified.",
	"restrict":    "The restrict call is queued.",
	"resolve":     "The case is resolved.",
	"still":       "The message went through ingest again and still yields no report; its reason is updated.",
}

func flashText(k string) string { return flashes[k] }

// timeHTML renders t as a <time> element in UTC; the console's script
// rewrites the text into the viewer's zone and keeps UTC in the title.
func timeHTML(t time.Time) template.HTML {
	if t.IsZero() {
		return "—"
	}
	u := t.UTC()
	return template.HTML(`<time datetime="` + u.Format(time.RFC3339) + `" title="` + u.Format("2006-01-02 15:04:05") +
		` UTC">` + u.Format("2006-01-02 15:04:05") + ` UTC</time>`)
}

func short(n int, s string) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

func itoa(i int) string { return strconv.Itoa(i) }

// asset is one embedded file with its ETag.
type asset struct {
	data  []byte
	etag  string
	ctype string
}

type assets struct{ m map[string]*asset }

func loadAssets() (*assets, error) {
	a := &assets{m: map[string]*asset{}}
	err := fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case "", ".md":
			ct = "text/plain; charset=utf-8" // LICENSE, VERSIONS
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		a.m[strings.TrimPrefix(p, "assets/")] = &asset{data: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ct}
		return nil
	})
	return a, err
}

// serveAsset serves an embedded file; browsers revalidate with the ETag
// (the files change only with the binary).
func (c *Console) serveAsset(w http.ResponseWriter, r *http.Request) {
	a := c.assets.m[r.PathValue("path")]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.data))
}
