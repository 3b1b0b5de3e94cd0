package ui

import (
	"bytes"
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

// refreshSeconds is the plain refresh of a browser without JavaScript.
const refreshSeconds = 30

type pageSet struct {
	// t holds every page's body (page-NAME) and the layout around it:
	// one set, each template escaped once (a clone of the set per page
	// kept eight escaped copies of it, 2 MiB of heap).
	t *template.Template
	// csp is the Content-Security-Policy: nothing but this server's own
	// inline stylesheet and script, by hash, and its own event stream.
	csp string
}

// pageSet is the parsed pages, made on first use and freed once nobody
// has looked for a while (idle.go).
func (s *Server) pageSet() *pageSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used = time.Now()
	if s.pages == nil {
		s.pages = mustParse()
		s.freeLater()
	}
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
	ps := &pageSet{t: template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/*.html"))}
	ps.csp = "default-src 'none'; script-src '" + hash(js) + "'; style-src '" + hash(css) + "'; " +
		"connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	return ps
}

func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// execute writes page name: its body, then the layout around it. The
// body is html/template's own output (a template must end where it began,
// in HTML text), so the layout takes it as it is.
func (p *pageSet) execute(w io.Writer, name string, l layout) error {
	var body bytes.Buffer
	if err := p.t.ExecuteTemplate(&body, "page-"+name, l.Body); err != nil {
		return err
	}
	l.Main = template.HTML(body.String())
	return p.t.ExecuteTemplate(w, "layout", l)
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
