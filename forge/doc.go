// Package forge talks to the forge that hosts the config repository —
// GitHub, GitLab, or Gitea (Forgejo speaks the same API) — to show what
// berth did where developers look (DESIGN.md §9): a commit status per env,
// and promotion pull requests (open, update, comment, close; never merge).
//
// It owns the HTTP side only: paths, payloads and auth headers per forge,
// the token (read from its file on every use, never logged, never in an
// error), descriptions and bodies made safe and cut to each forge's limit,
// and rate limits honoured (Retry-After, GitHub's primary and secondary
// limits, GitLab's RateLimit-* headers): once a forge says "wait", the
// client makes no call before the time it named. A forge that is down or
// limiting is an Outage (internal/failure) for the caller, never a verdict
// on a revision; what to post and when is the reporter's business
// (reporter.go), which keeps posting off every deploy's critical path.
package forge
