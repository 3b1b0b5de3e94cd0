package forge

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
)

// gitea speaks Gitea's API under /api/v1, which Forgejo shares
// (docs.gitea.com/api; checked against Gitea 1.27's routes).
type gitea struct{}

func (gitea) headers(h http.Header, token string) {
	h.Set("Authorization", "token "+token)
	h.Set("Accept", "application/json")
}

// Gitea's states are pending, success, error, failure and warning (1.27
// adds skipped; Forgejo has none): a superseded commit gets warning.
func (gitea) state(s State) string {
	if s == Superseded {
		return "warning"
	}
	return string(s)
}

func (g gitea) setStatus(ctx context.Context, c *Client, sha string, s Status) error {
	in := map[string]string{"state": g.state(s.State), "description": s.Description, "context": s.Context}
	if s.TargetURL != "" {
		in["target_url"] = s.TargetURL
	}
	return c.do(ctx, call{method: http.MethodPost, path: repoPath(c.cfg.Repo) + "/statuses/" + sha, in: in})
}

// findPR pages through the pull requests in state, newest first (Gitea
// filters them by neither head nor base), at most 500 of them.
func (gitea) findPR(ctx context.Context, c *Client, head, base, state string) (*PR, error) {
	const limit = 50
	for page := 1; page <= 10; page++ {
		var out []githubPR // the same shape
		q := url.Values{"state": {state}, "limit": {strconv.Itoa(limit)}, "page": {strconv.Itoa(page)}}
		if err := c.do(ctx, call{method: http.MethodGet, path: repoPath(c.cfg.Repo) + "/pulls", query: q, out: &out}); err != nil {
			return nil, err
		}
		for _, p := range out {
			if p.is(head, base) {
				return p.found(), nil
			}
		}
		if len(out) < limit {
			break
		}
	}
	return nil, nil
}

// commit is one request to the files API: the files changed on the head of
// the base branch, written to a new branch (force_push replaces the one
// left by an earlier promotion). Each file names the blob it replaces, so
// a base branch that changed one of them since is refused rather than
// overwritten.
func (gitea) commit(ctx context.Context, c *Client, cm Commit) (string, error) {
	var files []map[string]string
	for _, f := range cm.Files {
		files = append(files, map[string]string{
			"operation": "update", "path": f.Path,
			"content": base64.StdEncoding.EncodeToString(f.New), "sha": blobID(f.Old),
		})
	}
	var out struct {
		Commit struct {
			SHA string `json:"sha"`
		} `json:"commit"`
	}
	in := map[string]any{"branch": cm.BaseBranch, "new_branch": cm.Branch, "force_push": true, "message": cm.Message, "files": files}
	if err := c.do(ctx, call{method: http.MethodPost, path: repoPath(c.cfg.Repo) + "/contents", in: in, out: &out}); err != nil {
		return "", err
	}
	return out.Commit.SHA, nil
}

// blobID is Git's object id of a blob (SHA-1 repositories).
func blobID(b []byte) string {
	h := sha1.New()
	h.Write([]byte("blob " + strconv.Itoa(len(b)) + "\x00"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// prs: Gitea's pull requests are GitHub's, without maintainer_can_modify.
func (gitea) prs(c *Client) prAPI {
	a := github{}.prs(c)
	a.open = nil
	return a
}
