// Package localname owns one check against DNS rebinding for berth's
// loopback listeners (the agent's local API and its status page, berth
// ui's default): a web page the viewer opens elsewhere can point a name of
// its own at 127.0.0.1 and then read a loopback server's answers as its own
// origin's, since a browser's same-origin rule compares names, not
// addresses. A loopback server therefore answers only requests addressed to
// an IP address, to localhost or a name under .localhost, or arriving over
// a unix socket: a rebound name still reaches it, but is refused.
package localname

import (
	"net"
	"net/http"
	"strings"
)

// Allowed says whether r is addressed to this host by an address or by
// localhost (or came over a unix socket, or names no host at all).
func Allowed(r *http.Request) bool {
	if r.Host == "" {
		return true
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a.Network() == "unix" {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, _, _ := strings.Cut(host, "%"); net.ParseIP(ip) != nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// Refusal is what a refused request is told (with 421 Misdirected Request).
const Refusal = "this server answers requests addressed to an IP address or localhost only " +
	"(another name may be a web page rebinding its own name to this host); " +
	"a reverse proxy in front of it must pass the upstream's address as the Host header"
