package forge

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimitedError says the forge asked berth to wait: no request is made
// before Until.
type RateLimitedError struct {
	Until  time.Time
	Reason string
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("forge rate limit: no request before %s (%s)", e.Until.UTC().Format(time.RFC3339), e.Reason)
}

// Waits the client applies when the forge names none.
const (
	// secondaryWait is GitHub's advice for a secondary rate limit without
	// Retry-After: wait at least a minute, longer each time in a row.
	secondaryWait = time.Minute
	maxLimitWait  = time.Hour
	// maxNamedWait caps a wait the forge names: GitHub's and GitLab's
	// windows are an hour at most (a minute's slack for clocks), and a
	// hostile or broken answer (Retry-After: 1000000000) must not
	// silence the reporter longer.
	maxNamedWait = time.Hour + time.Minute
)

// rateLimit reads a response for rate limiting, following GitHub's rules
// (docs: "Rate limits for the REST API", "Exceeding the rate limit") which
// GitLab's headers also fit:
//   - 429, or 403 that says so (x-ratelimit-remaining: 0, or a message
//     naming a rate limit), is a limit;
//   - wait Retry-After seconds (or until its date) when present; else,
//     with no requests remaining, until the reset time (x-ratelimit-reset,
//     GitLab's RateLimit-Reset, in UTC epoch seconds); else at least a
//     minute, doubling with each limit in a row (strikes).
//
// A success that spent the last request of the budget returns the reset
// time as until with limited false: the client waits for it before its
// next request rather than provoke a 403. strikes counts the secondary
// limits (any but "no requests remaining") in a row before this one.
func rateLimit(resp *http.Response, body []byte, now time.Time, strikes int) (until time.Time, reason string, limited, secondary bool) {
	h := resp.Header
	remaining := firstHeader(h, "X-RateLimit-Remaining", "RateLimit-Remaining")
	reset := epoch(firstHeader(h, "X-RateLimit-Reset", "RateLimit-Reset"), now)
	secondary = remaining != "0"
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		reason = "429 Too Many Requests"
	case resp.StatusCode == http.StatusForbidden && remaining == "0":
		reason = "403: no requests remaining"
	case resp.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(apiMessage(body)), "rate limit"):
		reason = "403: " + apiMessage(body)
	default:
		if remaining == "0" && !reset.IsZero() {
			return reset, "", false, false
		}
		return time.Time{}, "", false, false
	}
	if d, ok := retryAfter(h.Get("Retry-After"), now); ok {
		return now.Add(min(d, maxNamedWait)), reason + ", Retry-After", true, secondary
	}
	if remaining == "0" && !reset.IsZero() {
		return reset, reason + ", until the reset", true, secondary
	}
	wait := secondaryWait << min(strikes, 6)
	return now.Add(min(wait, maxLimitWait)), reason, true, secondary
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(h.Get(n)); v != "" {
			return v
		}
	}
	return ""
}

// epoch reads UTC epoch seconds, one second late (the reset is that
// second's start), capped at maxNamedWait from now.
func epoch(v string, now time.Time) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	t := time.Unix(n+1, 0)
	if t.Before(now) {
		return now
	}
	if t.Sub(now) > maxNamedWait {
		return now.Add(maxNamedWait)
	}
	return t
}

// retryAfter reads Retry-After: delta seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		return time.Duration(min(n, uint64(maxNamedWait/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
