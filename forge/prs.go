package forge

import (
	"context"
	"maps"
	"net/http"
	"strconv"
)

// prAPI is where a forge keeps its pull (GitLab: merge) requests and what
// it calls their fields: the three forges open, edit, close and comment on
// them alike, with other paths and names.
type prAPI struct {
	pulls    string             // the collection; number n is pulls/n
	comments func(n int) string // where comments on number n go
	fields   [3]string          // the keys of head, base and body
	open     map[string]any     // what a new one takes beside them
	edit     string             // the method that edits one
	closing  map[string]string  // the edit that closes one unmerged
	answer   func() interface{ pr() *PR }
}

func (a prAPI) openPR(ctx context.Context, c *Client, p NewPR) (*PR, error) {
	out := a.answer()
	in := map[string]any{a.fields[0]: p.Head, a.fields[1]: p.Base, "title": p.Title, a.fields[2]: p.Body}
	maps.Copy(in, a.open)
	if err := c.do(ctx, call{method: http.MethodPost, path: a.pulls, in: in, out: out}); err != nil {
		return nil, err
	}
	return out.pr(), nil
}

func (a prAPI) editPR(ctx context.Context, c *Client, n int, title, body string, close bool) error {
	in := map[string]string{"title": title, a.fields[2]: body}
	if close {
		in = a.closing
	}
	return c.do(ctx, call{method: a.edit, path: a.pulls + "/" + strconv.Itoa(n), in: in})
}

func (a prAPI) comment(ctx context.Context, c *Client, n int, body string) error {
	return c.do(ctx, call{method: http.MethodPost, path: a.comments(n), in: map[string]string{"body": body}})
}
