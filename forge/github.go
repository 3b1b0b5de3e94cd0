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

// github speaks GitHub's REST API (api.github.com, or GitHub Enterprise
// Server's /api/v3): docs.github.com/rest, API version 2022-11-28.
type github struct{}

func (github) headers(h http.Header, token string) {
	h.Set("Authorization", "Bearer "+token)
	h.Set("Accept", "application/vnd.github+json")
	h.Set("X-GitHub-Api-Version", "2022-11-28")
}

// GitHub's states are pending, success, failure and error; a superseded
// commit is an error ("not deployed: …").
func (github) state(s State) string {
	if s == Superseded {
		return string(Error)
	}
	return string(s)
}

func (g github) setStatus(ctx context.Context, c *Client, sha string, s Status) error {
	in := map[string]string{"state": g.state(s.State), "description": s.Description, "context": s.Context}
	if s.TargetURL != "" {
		in["target_url"] = s.TargetURL
	}
	return c.do(ctx, call{method: http.MethodPost, path: repoPath(c.cfg.Repo) + "/statuses/" + sha, in: in})
}

type githubPR struct {
	Number   int      `json:"number"`
	HTMLURL  string   `json:"html_url"`
	Title    string   `json:"title"`
	Body     string   `json:"body"`
	State    string   `json:"state"`
	Merged   bool     `json:"merged"`    // Gitea
	MergedAt *string  `json:"merged_at"` // GitHub (and Gitea)
	Head     prBranch `json:"head"`
	Base     prBranch `json:"base"`
}

// prBranch is a pull request's side (GitHub and Gitea).
type prBranch struct {
	Ref    string `json:"ref"`
	RepoID int64  `json:"repo_id"` // Gitea
	Repo   *struct {
		ID int64 `json:"id"`
	} `json:"repo"`
}

func (b prBranch) repoID() int64 {
	if b.Repo != nil && b.Repo.ID != 0 {
		return b.Repo.ID
	}
	return b.RepoID
}

// is says whether p goes from branch head into base within the
// repository itself: anyone may open a pull request from a fork's branch
// of the same name, which berth must not take for its own (it would write
// its plan into the body of another diff).
func (p githubPR) is(head, base string) bool {
	id := p.Head.repoID()
	return p.Head.Ref == head && p.Base.Ref == base && id != 0 && id == p.Base.repoID()
}

func (p githubPR) pr() *PR {
	return &PR{Number: p.Number, URL: p.HTMLURL, Head: p.Head.Ref, Base: p.Base.Ref, Title: p.Title, Body: p.Body, Closed: p.State == "closed"}
}

// found is what FindPR returns of p, the newest match in state: an open
// one, a closed one unless merged.
func (p githubPR) found() *PR {
	if p.State == "closed" && (p.Merged || p.MergedAt != nil) {
		return nil
	}
	return p.pr()
}

// findPR lists the PRs of berth's branch, newest first (GitHub's order).
func (github) findPR(ctx context.Context, c *Client, head, base, state string) (*PR, error) {
	owner, _, _ := strings.Cut(c.cfg.Repo, "/")
	var out []githubPR
	q := url.Values{"state": {state}, "head": {owner + ":" + head}, "base": {base}, "per_page": {"10"}}
	if err := c.do(ctx, call{method: http.MethodGet, path: repoPath(c.cfg.Repo) + "/pulls", query: q, out: &out}); err != nil {
		return nil, err
	}
	for _, p := range out {
		if p.is(head, base) {
			return p.found(), nil
		}
	}
	return nil, nil
}

// commit uses the Git database API: the base commit's tree, a new tree
// with the files, a commit on the base, then the branch moved to it (or
// created): four or five requests, and nothing is visible until the last.
func (github) commit(ctx context.Context, c *Client, cm Commit) (string, error) {
	rp := repoPath(c.cfg.Repo)
	var base struct {
		Tree struct {
			SHA string `json:"sha"`
		} `json:"tree"`
	}
	if err := c.do(ctx, call{method: http.MethodGet, path: rp + "/git/commits/" + cm.BaseSHA, out: &base}); err != nil {
		return "", err
	}
	type entry struct {
		Path    string  `json:"path"`
		Mode    string  `json:"mode"`
		Type    string  `json:"type"`
		Content *string `json:"content,omitempty"`
		SHA     *string `json:"sha,omitempty"`
	}
	var tree []entry
	for _, f := range cm.Files {
		e := entry{Path: f.Path, Mode: "100644", Type: "blob"}
		if f.Executable {
			e.Mode = "100755"
		}
		if utf8.Valid(f.New) {
			s := string(f.New)
			e.Content = &s
		} else {
			var blob struct {
				SHA string `json:"sha"`
			}
			in := map[string]string{"content": base64.StdEncoding.EncodeToString(f.New), "encoding": "base64"}
			if err := c.do(ctx, call{method: http.MethodPost, path: rp + "/git/blobs", in: in, out: &blob}); err != nil {
				return "", err
			}
			e.SHA = &blob.SHA
		}
		tree = append(tree, e)
	}
	var made struct {
		SHA string `json:"sha"`
	}
	if err := c.do(ctx, call{method: http.MethodPost, path: rp + "/git/trees", in: map[string]any{"base_tree": base.Tree.SHA, "tree": tree}, out: &made}); err != nil {
		return "", err
	}
	var commit struct {
		SHA string `json:"sha"`
	}
	in := map[string]any{"message": cm.Message, "tree": made.SHA, "parents": []string{cm.BaseSHA}}
	if err := c.do(ctx, call{method: http.MethodPost, path: rp + "/git/commits", in: in, out: &commit}); err != nil {
		return "", err
	}
	err := c.do(ctx, call{method: http.MethodPatch, path: rp + "/git/refs/heads/" + cm.Branch, in: map[string]any{"sha": commit.SHA, "force": true}})
	var ae *APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusUnprocessableEntity || ae.Status == http.StatusNotFound) {
		// "Reference does not exist": the first promotion.
		err = c.do(ctx, call{method: http.MethodPost, path: rp + "/git/refs", in: map[string]string{"ref": "refs/heads/" + cm.Branch, "sha": commit.SHA}})
	}
	return commit.SHA, err
}

func (github) prs(c *Client) prAPI {
	rp := repoPath(c.cfg.Repo)
	return prAPI{
		pulls:    rp + "/pulls",
		comments: func(n int) string { return rp + "/issues/" + strconv.Itoa(n) + "/comments" },
		fields:   [3]string{"head", "base", "body"},
		open:     map[string]any{"maintainer_can_modify": false},
		edit:     http.MethodPatch,
		closing:  map[string]string{"state": "closed"},
		answer:   func() interface{ pr() *PR } { return new(githubPR) },
	}
}
