package ui

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"berth.dev/berth/jobs"
	"berth.dev/berth/reconcile"
)

// The local pages beyond the host's: the history, a deploy's record, a
// job and one of its runs.

// historyPerPage is how many records a history page lists.
const historyPerPage = 50

// maxQuery bounds the history's text filter.
const maxQuery = 200

var historyResults = []string{string(reconcile.ResultSucceeded), string(reconcile.ResultFailed), string(reconcile.ResultOutage),
	string(reconcile.ResultRunning), string(reconcile.ResultInterrupted), string(reconcile.ResultHeld), string(reconcile.ResultUnchanged)}

// historyPage filters env's records by result and text and returns one
// page of them.
func (s *Server) historyPage(e *LocalEnv, q url.Values, now time.Time) (historyView, error) {
	v := historyView{Env: clean(e.Name), Results: historyResults}
	for i := range s.Local.Envs {
		v.Envs = append(v.Envs, clean(s.Local.Envs[i].Name))
	}
	result := q.Get("result")
	for _, r := range historyResults {
		if r == result {
			v.Result = r
		}
	}
	text := q.Get("q")
	if len(text) > maxQuery {
		text = text[:maxQuery]
	}
	v.Query = clean(text)
	needle := strings.ToLower(text)
	recs, _, err := s.journal.list(e.JournalDir)
	if err != nil {
		return v, err
	}
	var match []*reconcile.Record
	for _, r := range recs {
		if v.Result != "" && string(r.Result) != v.Result {
			continue
		}
		if needle != "" && !matches(r, needle) {
			continue
		}
		match = append(match, r)
	}
	v.Total = len(match)
	v.Pages = max(1, (len(match)+historyPerPage-1)/historyPerPage)
	v.Page, _ = strconv.Atoi(q.Get("page"))
	v.Page = min(max(v.Page, 1), v.Pages)
	from := (v.Page - 1) * historyPerPage
	for _, r := range match[from:min(from+historyPerPage, len(match))] {
		v.Rows = append(v.Rows, historyRowOf(e.Name, r, now))
	}
	pageHref := func(n int) string {
		qq := url.Values{"env": {e.Name}, "page": {strconv.Itoa(n)}}
		if v.Result != "" {
			qq.Set("result", v.Result)
		}
		if text != "" {
			qq.Set("q", text)
		}
		return href("history") + "?" + qq.Encode()
	}
	if v.Page > 1 {
		v.Prev = pageHref(v.Page - 1)
	}
	if v.Page < v.Pages {
		v.Next = pageHref(v.Page + 1)
	}
	return v, nil
}

// matches says whether a record's commit, subject, author, reason, phase
// or id contains needle (lower case).
func matches(r *reconcile.Record, needle string) bool {
	for _, f := range []string{r.Commit, r.Subject, r.Author, r.Reason, string(r.Phase), r.ID} {
		if strings.Contains(strings.ToLower(f), needle) {
			return true
		}
	}
	return false
}

// deployPage is one record of env, or nil.
func (s *Server) deployPage(e *LocalEnv, id string, now time.Time) (*deployView, error) {
	recs, _, err := s.journal.list(e.JournalDir)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.ID == id {
			v := deployViewOf(e.Name, r, now)
			return &v, nil
		}
	}
	return nil, nil
}

// jobRunsShown is how many runs a job's page lists.
const jobRunsShown = 100

// jobPageOf is one job of env with its runs; with a run id, that run's
// output too. Nil when the env has no such job or run.
func (s *Server) jobPageOf(e *LocalEnv, job, run string) (*jobPage, error) {
	if e.Jobs == nil {
		return nil, nil
	}
	l, err := e.Jobs.Listing()
	if err != nil {
		return nil, err
	}
	var ent *jobs.Entry
	for i := range l.Jobs {
		if l.Jobs[i].Name == job {
			ent = &l.Jobs[i]
		}
	}
	runs, err := e.Jobs.Newest(job, jobRunsShown)
	if err != nil {
		return nil, err
	}
	if ent == nil && len(runs) == 0 {
		return nil, nil
	}
	if ent == nil { // a job the live revision no longer has: its kept runs
		ent = &jobs.Entry{Name: job}
	}
	p := &jobPage{Env: clean(e.Name)}
	views := make([]runView, 0, min(len(runs), jobRunsShown))
	for i := range runs[:min(len(runs), jobRunsShown)] {
		views = append(views, localRun(e.Name, s.Local.Host, &runs[i]))
	}
	p.Job, p.Runs = jobOf(e.Name, ent, views), views
	var shown *jobs.Run
	switch {
	case run != "":
		if r, err := e.Jobs.Run(job, run); err == nil {
			shown = r
		}
	default:
		// The newest run that made output, as berth jobs logs picks it.
		for i := range runs {
			if runs[i].Done() && runs[i].Status != jobs.StatusSkipped {
				shown = &runs[i]
				break
			}
		}
	}
	if shown != nil {
		rv := localRun(e.Name, s.Local.Host, shown)
		// The store keeps output redacted as the run ended (secret values
		// replaced); cleaned here for the page.
		if out, errb, err := e.Jobs.Output(job, shown.ID); err == nil {
			rv.Stdout, rv.Stderr = cleanBlock(string(out), maxOutput), cleanBlock(string(errb), maxOutput)
		}
		p.Run = &rv
	}
	if run != "" && p.Run == nil {
		return nil, nil
	}
	return p, nil
}

// href is an absolute path of this server, every segment escaped.
func href(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

func queryEscape(s string) string { return url.QueryEscape(s) }
