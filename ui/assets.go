package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"time"

	template "berth.dev/berth/internal/htmltemplate"
)

// The templates, the stylesheet and the live-update script are embedded
// and parsed on the first request (pageSet), never at start: an agent
// nobody looks at keeps none of it in memory. They are html/template's, as
// internal/htmltemplate copies it: the stdlib's escaping, with no method
// calls from templates, so the linker keeps removing unused methods from
// the agent's binary (scripts/gen-htmltemplate says why).

//go:embed templates
var files embed.FS

// pages lists each page and the template that draws its body.
var pages = []string{"host", "history", "deploy", "job", "fleet", "fleethost", "fleetjob", "notfound"}

// refreshSeconds is the plain refresh of a browser without JavaScript.
const refreshSeconds = 30

type pageSet struct {
	byName map[string]*template.Template
	// csp is the Content-Security-Policy: nothing but this server's own
	// inline stylesheet and script, by hash, and its own event stream.
	csp string
}

func (s *Server) pageSet() *pageSet {
	s.once.Do(func() { s.pages = mustParse() })
	return s.pages
}

func mustParse() *pageSet {
	css, err := files.ReadFile("templates/style.css")
	if err != nil {
		panic(err)
	}
	js, err := files.ReadFile("templates/live.js")
	if err != nil {
		panic(err)
	}
	funcs := template.FuncMap{
		// The stylesheet and the script are ours, constant, and allowed by
		// their hashes: written as they are.
		"css":   func() template.CSS { return template.CSS(css) },
		"js":    func() template.JS { return template.JS(js) },
		"stamp": stamp,
		// Templates call no methods (internal/htmltemplate): a time's
		// zero is asked here.
		"zero": func(t time.Time) bool { return t.IsZero() },
		"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"px":   func(f float64) string { return fmt.Sprintf("%.1f", f) },
	}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/*.html"))
	ps := &pageSet{byName: map[string]*template.Template{}}
	for _, name := range pages {
		t := template.Must(base.Clone())
		template.Must(t.New("body").Parse(`{{template "page-` + name + `" .}}`))
		ps.byName[name] = t
	}
	ps.csp = "default-src 'none'; script-src '" + hash(js) + "'; style-src '" + hash(css) + "'; " +
		"connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	return ps
}

func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func (p *pageSet) execute(w io.Writer, name string, l layout) error {
	t := p.byName[name]
	if t == nil {
		return fmt.Errorf("no page %q", name)
	}
	return t.ExecuteTemplate(w, "layout", l)
}

// secure sets the headers every answer carries: the CSP, no sniffing, no
// framing, no referrer, no caching (the page shows live state).
func secure(h http.Header, csp string) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// stamp is a time as the page shows it: UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
