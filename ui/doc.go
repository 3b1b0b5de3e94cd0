// Package ui is berth's read-only status page (DESIGN.md §9, docs/ui.md):
// this host's envs on the agent's local listener, and a fleet read from
// etcd by `berth ui`. It owns the page's view model, its server-rendered
// html/template pages with the deploy timeline drawn as inline SVG, the
// security headers (a strict CSP with one hashed script for live updates
// over Server-Sent Events), and the readers that fill the model: the
// state dir, the journal and the job store of this host (local.go), and
// the fleet client's one-read snapshot (fleetsrc.go).
//
// Every string that reaches the page from a config repo, a journal or
// etcd is hostile: it is cleaned (control characters, bidi overrides and
// invalid UTF-8 made visible, length bounded) when the model is built,
// and html/template escapes it when it is written. Nothing is parsed or
// allocated before the first request: the templates, the stylesheet's
// and the script's hashes are built once, on first use, so an agent
// nobody looks at pays nothing for its page.
package ui
