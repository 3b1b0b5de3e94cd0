package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
)

// Client is one forge repository's API, used serially (GitHub asks for
// serial requests; berth makes few). Its methods are safe to call from
// several goroutines.
type Client struct {
	cfg     Config
	be      backend
	limits  Limits
	http    *http.Client
	log     hclog.Logger
	timeout time.Duration
	// writeGap is the least time between two requests that change
	// something (GitHub's best practices: at least one second).
	writeGap time.Duration

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu        sync.Mutex // one request at a time
	until     time.Time  // no request before this (a rate limit)
	strikes   int        // rate limits in a row without a time to wait for
	lastWrite time.Time
	calls     atomic.Int64
}

// New returns a client for cfg (Resolved first). It contacts nothing.
func New(cfg Config, log hclog.Logger) (*Client, error) {
	cfg, err := cfg.Resolved()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	c := &Client{
		cfg: cfg, limits: LimitsOf(cfg.Type), log: log.Named("forge"),
		timeout: 30 * time.Second,
		now:     time.Now,
		sleep:   backoff.Sleep,
	}
	switch cfg.Type {
	case GitHub:
		c.be, c.writeGap = github{}, time.Second
	case GitLab:
		c.be = gitlab{}
	case Gitea:
		c.be = gitea{}
	}
	base, _ := url.Parse(cfg.APIURL)
	c.http = &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
		// The token goes in a header Go does not strip on a redirect to
		// another host (PRIVATE-TOKEN): follow only within the API's host.
		if len(via) >= 3 || req.URL.Host != base.Host || req.URL.Scheme != base.Scheme {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return c, nil
}

// Kind is the forge the client talks to.
func (c *Client) Kind() Kind { return c.cfg.Type }

// Repo is the repository path the client works on.
func (c *Client) Repo() string { return c.cfg.Repo }

// Limits are the forge's field limits.
func (c *Client) Limits() Limits { return c.limits }

// Calls is how many API requests the client has made.
func (c *Client) Calls() int64 { return c.calls.Load() }

// APIError is a forge's answer other than success.
type APIError struct {
	Method, Path string
	Status       int
	Message      string // the forge's message, one line, cut
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Message)
}

// Refused reports whether err is the forge refusing the request itself (a
// 4xx other than a rate limit: a bad token, a missing repository, a field
// it does not accept). Sending the same request again will not help.
func Refused(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && !failure.IsOutage(err)
}

// Unauthorized reports whether err is the forge refusing the token (401,
// or a 403 that is not a rate limit: expired, revoked, lacking a scope or
// access). Unlike other refusals it says nothing of the request: the token
// file is read again on every request, so the same request may work once
// an operator fixes the token.
func Unauthorized(err error) bool {
	var ae *APIError
	return Refused(err) && errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden)
}

// call is one request.
type call struct {
	method string
	path   string // below the API URL, segments already escaped
	query  url.Values
	in     any // JSON body
	out    any // JSON answer, when wanted
}

// do makes one request: after any rate-limit wait the forge asked for
// (refused at once with a RateLimitedError while it lasts), and for
// GitHub at least writeGap after the last write.
func (c *Client) do(ctx context.Context, r call) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Before(c.until) {
		return failure.AsOutage(&RateLimitedError{Until: c.until, Reason: "the forge asked to wait"})
	}
	if r.method != http.MethodGet && c.writeGap > 0 && !c.lastWrite.IsZero() {
		if wait := c.lastWrite.Add(c.writeGap).Sub(now); wait > 0 {
			if err := c.sleep(ctx, wait); err != nil {
				return failure.AsOutage(err)
			}
		}
	}
	token, err := c.token()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.request(ctx, r, token)
	if err != nil {
		return err
	}
	c.calls.Add(1)
	if r.method != http.MethodGet {
		c.lastWrite = c.now()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error names the URL: no credentials are in it (the token
		// travels in a header).
		return failure.AsOutage(fmt.Errorf("%s %s: %w", r.method, r.path, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return failure.AsOutage(fmt.Errorf("%s %s: read answer: %w", r.method, r.path, err))
	}
	if until, why, limited, secondary := rateLimit(resp, body, c.now(), c.strikes); limited {
		c.until = until
		if secondary {
			c.strikes++ // the next wait the forge does not name doubles
		}
		c.log.Warn("forge rate limit: waiting", "until", until.UTC().Format(time.RFC3339), "reason", why)
		return failure.AsOutage(&RateLimitedError{Until: until, Reason: why})
	} else if !until.IsZero() {
		c.until = until // the budget is spent: wait for its reset
	}
	c.strikes = 0
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: r.method, Path: r.path, Status: resp.StatusCode, Message: apiMessage(body)}
		if resp.StatusCode >= 500 {
			return failure.AsOutage(ae)
		}
		return ae
	}
	if r.out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, r.out); err != nil {
			return failure.AsOutage(fmt.Errorf("%s %s: read answer: %w", r.method, r.path, err))
		}
	}
	return nil
}

func (c *Client) request(ctx context.Context, r call, token string) (*http.Request, error) {
	u, err := url.Parse(c.cfg.APIURL + r.path)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	if r.query != nil {
		u.RawQuery = r.query.Encode()
	}
	var body io.Reader
	if r.in != nil {
		b, err := json.Marshal(r.in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode: %w", r.method, r.path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	if r.in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	c.be.headers(req.Header, token)
	return req, nil
}

// maxTokenFile bounds a token file read.
const maxTokenFile = 64 << 10

// token reads the token file, on every request. Errors name the file,
// never its content.
func (c *Client) token() (string, error) {
	f, err := os.Open(c.cfg.TokenFile)
	if err != nil {
		return "", failure.AsOutage(fmt.Errorf("read forge token: %w", err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", failure.AsOutage(fmt.Errorf("read forge token %s: %w", c.cfg.TokenFile, err))
	}
	t := strings.TrimSpace(string(b))
	switch {
	case len(b) > maxTokenFile:
		return "", fmt.Errorf("read forge token %s: larger than %d bytes", c.cfg.TokenFile, maxTokenFile)
	case t == "":
		return "", fmt.Errorf("read forge token %s: the file is empty", c.cfg.TokenFile)
	case strings.ContainsAny(t, "\r\n\x00"):
		return "", fmt.Errorf("read forge token %s: more than one line", c.cfg.TokenFile)
	}
	return t, nil
}

// apiMessage extracts a forge's error message: {"message": "…"} (GitHub,
// Gitea, GitLab), {"error": "…"} (GitLab), one line, cut.
func apiMessage(body []byte) string {
	var m struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	raw := m.Message
	if len(raw) == 0 {
		raw = m.Error
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw) // GitLab sends objects: {"base": ["…"]}
	}
	return OneLine(s, 200)
}
