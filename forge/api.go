package forge

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// State of a commit status, in berth's words; each forge gets its own
// (stateName).
type State string

const (
	// Pending: a deploy of the commit is under way or waits its turn.
	Pending State = "pending"
	// Success: the commit is live.
	Success State = "success"
	// Failure: a verdict on the commit (refused, or rolled back).
	Failure State = "failure"
	// Error: the commit is held (a halt, a hold, an outage that lasted).
	Error State = "error"
	// Superseded: a newer commit was deployed before this one was.
	Superseded State = "superseded"
)

// Status is one commit status.
type Status struct {
	State       State
	Context     string // "berth/prod"
	Description string // one line; made safe and cut by SetStatus
	TargetURL   string // http(s) only; others are left out
}

// PR is an open (or just closed) pull or merge request.
type PR struct {
	Number int    // GitLab: the iid
	URL    string // the page a person opens
	Head   string
	Base   string
	Title  string
	Body   string
	// Closed: closed without a merge (FindPR found no open one).
	Closed bool
}

// NewPR is a pull request to open.
type NewPR struct{ Head, Base, Title, Body string }

// FileChange is one file a commit writes (whole content).
type FileChange struct {
	Path       string
	Old, New   []byte // Old: the content the commit replaces
	Executable bool
}

// Commit is a commit made through the API on top of a base commit, and
// force-written to Branch (a berth/promote-* branch only).
type Commit struct {
	Branch     string
	BaseBranch string // the branch the base commit is on
	BaseSHA    string
	Message    string
	Files      []FileChange
}

// backend is one forge's dialect of the same operations.
type backend interface {
	headers(h http.Header, token string)
	setStatus(ctx context.Context, c *Client, sha string, s Status) error
	// findPR finds the newest PR from head into base in state "open" or
	// "closed" (closed: Closed set, or nil when it was merged).
	findPR(ctx context.Context, c *Client, head, base, state string) (*PR, error)
	prs(c *Client) prAPI
	commit(ctx context.Context, c *Client, cm Commit) (string, error)
}

var shaRe = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// SetStatus sets the status of commit sha (hex, full length).
func (c *Client) SetStatus(ctx context.Context, sha string, s Status) error {
	if !shaRe.MatchString(sha) {
		return fmt.Errorf("set status: %q is not a full commit id", sha)
	}
	s.Context = OneLine(s.Context, c.limits.Context)
	s.Description = OneLine(s.Description, c.limits.Description)
	if !httpURL(s.TargetURL) {
		s.TargetURL = ""
	}
	if err := c.be.setStatus(ctx, c, sha, s); err != nil {
		return fmt.Errorf("set status %s of %.12s: %w", s.State, sha, err)
	}
	return nil
}

// FindPR returns the open pull request from branch head into base of
// the repository itself (never a fork's); without one, the newest such
// pull request if it was closed without a merge (Closed: a person or a
// rollback declined it); else nil.
func (c *Client) FindPR(ctx context.Context, head, base string) (*PR, error) {
	if err := checkBranch(head, false); err != nil {
		return nil, err
	}
	pr, err := c.be.findPR(ctx, c, head, base, "open")
	if err == nil && pr == nil {
		pr, err = c.be.findPR(ctx, c, head, base, "closed")
	}
	if err != nil {
		return nil, fmt.Errorf("find pull request %s→%s: %w", head, base, err)
	}
	return pr, nil
}

// OpenPR opens a pull request from a berth/promote-* branch.
func (c *Client) OpenPR(ctx context.Context, p NewPR) (*PR, error) {
	if err := checkBranch(p.Head, true); err != nil {
		return nil, err
	}
	p.Title, p.Body = OneLine(p.Title, 200), c.body(p.Body)
	pr, err := c.be.prs(c).openPR(ctx, c, p)
	if err != nil {
		return nil, fmt.Errorf("open pull request %s→%s: %w", p.Head, p.Base, err)
	}
	return pr, nil
}

// UpdatePR replaces an open pull request's title and body.
func (c *Client) UpdatePR(ctx context.Context, number int, title, body string) error {
	if err := c.be.prs(c).editPR(ctx, c, number, OneLine(title, 200), c.body(body), false); err != nil {
		return fmt.Errorf("update pull request %d: %w", number, err)
	}
	return nil
}

// ClosePR closes a pull request without merging it, after a comment
// saying why (when why is not empty).
func (c *Client) ClosePR(ctx context.Context, number int, why string) error {
	if why != "" {
		if err := c.Comment(ctx, number, why); err != nil {
			return err
		}
	}
	if err := c.be.prs(c).editPR(ctx, c, number, "", "", true); err != nil {
		return fmt.Errorf("close pull request %d: %w", number, err)
	}
	return nil
}

// Comment adds a comment to a pull request.
func (c *Client) Comment(ctx context.Context, number int, body string) error {
	if err := c.be.prs(c).comment(ctx, c, number, c.body(body)); err != nil {
		return fmt.Errorf("comment on pull request %d: %w", number, err)
	}
	return nil
}

// CommitFiles writes files in one commit on top of cm.BaseSHA and points
// cm.Branch at it (forced: the branch is berth's own). It returns the new
// commit's id.
func (c *Client) CommitFiles(ctx context.Context, cm Commit) (string, error) {
	if err := checkBranch(cm.Branch, true); err != nil {
		return "", err
	}
	if !shaRe.MatchString(cm.BaseSHA) || cm.BaseBranch == "" || len(cm.Files) == 0 {
		return "", fmt.Errorf("commit to %s: a base commit, its branch and files are required", cm.Branch)
	}
	for _, f := range cm.Files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") || strings.Contains("/"+f.Path+"/", "/../") || strings.ContainsAny(f.Path, "\\\x00") {
			return "", fmt.Errorf("commit to %s: refusing the path %q", cm.Branch, f.Path)
		}
	}
	cm.Message = Body(cm.Message, 4096, "…")
	sha, err := c.be.commit(ctx, c, cm)
	if err != nil {
		return "", fmt.Errorf("commit to %s: %w", cm.Branch, err)
	}
	return sha, nil
}

func (c *Client) body(s string) string {
	return Body(s, c.limits.Body, "\n\n… (cut to the forge's limit)")
}

var promoteBranch = regexp.MustCompile(`^berth/promote-[a-z0-9][a-z0-9_-]*$`)

// PromoteBranch is the only branch berth pushes to for a promotion.
func PromoteBranch(from, to string) string { return "berth/promote-" + from + "-" + to }

// checkBranch refuses a branch name that could be read as something else;
// with push, anything but a berth/promote-* branch.
func checkBranch(b string, push bool) error {
	if push && !promoteBranch.MatchString(b) {
		return fmt.Errorf("berth pushes only to berth/promote-* branches, not %q", b)
	}
	if b == "" || strings.Contains(b, "..") || strings.HasPrefix(b, "-") || strings.ContainsAny(b, " ~^:?*[\\\x00\x7f") {
		return fmt.Errorf("invalid branch name %q", b)
	}
	return nil
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil
}

// repoPath escapes owner/name as two path segments (GitHub, Gitea).
func repoPath(repo string) string {
	owner, name, _ := strings.Cut(repo, "/")
	return "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name)
}
