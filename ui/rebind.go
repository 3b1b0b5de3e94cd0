package ui

import (
	"net/http"

	"berth.dev/berth/internal/localname"
)

// DNS rebinding: a web page the viewer opens elsewhere can point a name
// of its own at 127.0.0.1 and then read this server's answers as its own
// origin's (a browser's same-origin rule compares names, not addresses).
// A page on a loopback listener — the agent's, and berth ui's default —
// therefore answers only requests addressed to an IP, to localhost or a
// name under .localhost, or arriving over a unix socket: a rebound name
// reaches it, but is refused. berth ui beyond loopback answers any name
// (Server.AnyHost): names are how it is reached there, and TLS or a login
// guards it.

// hostAllowed says whether r may be answered.
func (s *Server) hostAllowed(r *http.Request) bool {
	return s.AnyHost || localname.Allowed(r)
}

// misdirected answers a request for a name this server does not answer.
func (s *Server) misdirected(w http.ResponseWriter) {
	secure(w.Header(), s.pageSet().csp)
	http.Error(w, localname.Refusal, http.StatusMisdirectedRequest)
}
