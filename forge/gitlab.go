package forge

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// gitlab speaks GitLab's REST API v4 (docs.gitlab.com/api): commit
// statuses, merge requests and their notes, and the commits API.
type gitlab struct{}

func (gitlab) headers(h http.Header, token string) {
	h.Set("PRIVATE-TOKEN", token)
	h.Set("Accept", "application/json")
}

// GitLab's states are pending, running, success, failed, canceled and
// skipped: a deploy under way is running; a held commit failed; a
// superseded one canceled (GitLab moves a running status to canceled,
// never to skipped: app/models/commit_status.rb).
func (gitlab) state(s State) string {
	switch s {
	case Pending:
		return "running"
	case Failure, Error:
		return "failed"
	case Superseded:
		return "canceled"
	}
	return string(s)
}

func projectPath(repo string) string { return "/projects/" + url.PathEscape(repo) }

func (g gitlab) setStatus(ctx context.Context, c *Client, sha string, s Status) error {
	in := map[string]string{"state": g.state(s.State), "name": s.Context, "description": s.Description}
	if s.TargetURL != "" {
		in["target_url"] = s.TargetURL
	}
	err := c.do(ctx, call{method: http.MethodPost, path: projectPath(c.cfg.Repo) + "/statuses/" + sha, in: in})
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(ae.Message, "Cannot transition status") &&
		strings.Contains(ae.Message, " from :"+in["state"]) {
		// GitLab refuses running → running (and the like): the status
		// already says so. Its description stays the first one. Any
		// other transition it refuses is an error.
		return nil
	}
	return err
}

type gitlabMR struct {
	IID          int    `json:"iid"`
	WebURL       string `json:"web_url"`
	Title        string `json:"title"`
	Description  string `json:"description"`
	State        string `json:"state"` // opened, closed, merged, locked
	SourceBranch string `json:"source_branch"`
	TargetBranch string `json:"target_branch"`
	// A merge request from a fork has another source project.
	SourceProjectID int64 `json:"source_project_id"`
	TargetProjectID int64 `json:"target_project_id"`
}

func (m gitlabMR) pr() *PR {
	return &PR{Number: m.IID, URL: m.WebURL, Head: m.SourceBranch, Base: m.TargetBranch, Title: m.Title, Body: m.Description, Closed: m.State == "closed"}
}

// findPR lists berth's merge requests in state, newest first (GitLab's
// order; "closed" excludes merged ones, which GitLab calls merged).
func (gitlab) findPR(ctx context.Context, c *Client, head, base, state string) (*PR, error) {
	if state == "open" {
		state = "opened"
	}
	var out []gitlabMR
	q := url.Values{"state": {state}, "source_branch": {head}, "target_branch": {base}}
	if err := c.do(ctx, call{method: http.MethodGet, path: projectPath(c.cfg.Repo) + "/merge_requests", query: q, out: &out}); err != nil {
		return nil, err
	}
	for _, m := range out {
		// Not one from a fork's branch of the same name (githubPR.is).
		if m.SourceBranch == head && m.TargetBranch == base && m.SourceProjectID != 0 && m.SourceProjectID == m.TargetProjectID {
			return m.pr(), nil
		}
	}
	return nil, nil
}

// commit is one request: the commits API with start_sha and force, which
// makes the branch point at a new commit on the base, whatever it held.
func (gitlab) commit(ctx context.Context, c *Client, cm Commit) (string, error) {
	var actions []map[string]any
	for _, f := range cm.Files {
		a := map[string]any{"action": "update", "file_path": f.Path, "execute_filemode": f.Executable}
		if utf8.Valid(f.New) {
			a["content"] = string(f.New)
		} else {
			a["content"], a["encoding"] = base64.StdEncoding.EncodeToString(f.New), "base64"
		}
		actions = append(actions, a)
	}
	var out struct {
		ID string `json:"id"`
	}
	in := map[string]any{"branch": cm.Branch, "start_sha": cm.BaseSHA, "force": true, "commit_message": cm.Message, "actions": actions}
	if err := c.do(ctx, call{method: http.MethodPost, path: projectPath(c.cfg.Repo) + "/repository/commits", in: in, out: &out}); err != nil {
		return "", err
	}
	return out.ID, nil
}

func (gitlab) prs(c *Client) prAPI {
	pp := projectPath(c.cfg.Repo) + "/merge_requests"
	return prAPI{
		pulls:    pp,
		comments: func(n int) string { return pp + "/" + strconv.Itoa(n) + "/notes" },
		fields:   [3]string{"source_branch", "target_branch", "description"},
		open:     map[string]any{"remove_source_branch": true},
		edit:     http.MethodPut,
		closing:  map[string]string{"state_event": "close"},
		answer:   func() interface{ pr() *PR } { return new(gitlabMR) },
	}
}
