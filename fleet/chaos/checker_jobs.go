package chaos

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"berth.dev/berth/fleet"
)

// jobs: every scheduled time ran at most once; every time that no fault
// covered ran exactly once (a time skipped by `concurrency: forbid` counts
// when a run of the job really was still going).
func (c *checker) jobs() {
	type key struct {
		job string
		t   int64
	}
	runs := map[key][]Event{}
	skips := map[key][]Event{}
	var starts []Event
	for _, e := range c.in.Events {
		switch e.Kind {
		case "job_start":
			runs[key{e.Job, e.T}] = append(runs[key{e.Job, e.T}], e)
			starts = append(starts, e)
		case "job_skip", "job_local_skip":
			skips[key{e.Job, e.T}] = append(skips[key{e.Job, e.T}], e)
		}
	}
	ends := map[int64]Event{}
	for _, e := range c.in.Events {
		if e.Kind == "job_end" {
			ends[e.Token] = e
		}
	}
	for k, rs := range runs {
		if len(rs) > 1 {
			var who []string
			for _, r := range rs {
				who = append(who, fmt.Sprintf("%s (token %d)", r.Host, r.Token))
			}
			c.violate("job time ran twice", rs[1].Time(), "job %s time %s ran %d times: %s", k.job, fmtT(k.t), len(rs), strings.Join(who, ", "))
		}
	}
	if c.start.IsZero() || c.end.IsZero() {
		return
	}
	for _, j := range c.in.Jobs {
		// Times from when the faults began to the last one the run had
		// time to finish before the end.
		first := c.start.Truncate(j.Every).Add(j.Every)
		for t := first; t.Add(j.Every + 2*time.Second).Before(c.in.FinalAt); t = t.Add(j.Every) {
			k := key{j.Name, t.UnixNano()}
			if len(runs[k]) > 0 || c.covered(t.Add(-c.in.TTL), t.Add(j.Every)) {
				continue
			}
			if h := c.claimer(j.Name, t); h != "" && c.hostFaulted(h, t.Add(-c.in.TTL), t.Add(j.Every)) {
				continue // its claimer was cut off, stopped or killed
			}
			why := "no host ran it"
			legit := false
			for _, s := range skips[k] {
				why = fmt.Sprintf("%s skipped it: %s", s.Host, s.Note)
				if s.Kind == "job_skip" && c.stillRunning(starts, ends, j, s) {
					legit = true
				}
			}
			if !legit {
				c.violate("job time not run", t, "job %s time %s was covered by no fault and did not run: %s", j.Name, fmtT(t.UnixNano()), why)
			}
		}
	}
}

// stillRunning: the run that skip names ("the run of T on host H is
// still running") really was going when the skip was decided: it started,
// and it had not ended, or ended too recently for its result to be
// written, or its host died too recently for its lease to be gone. Or it
// may have been: H was cut off, stopped or killed between T and the skip,
// so its claim's outcome may be unknown to it — adopted and run once
// etcd answers, or settled; its `active` mark stands until then (bounded
// by staleActive).
func (c *checker) stillRunning(starts []Event, ends map[int64]Event, j JobSpec, skip Event) bool {
	_, rest, ok := strings.Cut(skip.Note, "the run of ")
	if !ok {
		return false
	}
	ts, rest, _ := strings.Cut(rest, " on host ")
	host, _, _ := strings.Cut(rest, " ")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return false
	}
	if c.hostFaulted(host, t.Add(-c.in.TTL), skip.Time()) {
		return true
	}
	slack := c.in.TTL + 2*c.in.Timeout
	for _, r := range starts {
		if r.Job != j.Name || r.T != t.UnixNano() || r.Host != host || !r.Time().Before(skip.Time()) {
			continue
		}
		if e, ok := ends[r.Token]; ok {
			return e.Time().Add(slack).After(skip.Time())
		}
		return c.procEnd(r.Host, r.Pid, r.Time()).Add(slack).After(skip.Time())
	}
	return false
}

// claimer is the host whose claim of the job's time t landed, from
// etcd's history ("" if none did).
func (c *checker) claimer(job string, t time.Time) string {
	key := c.in.Root + "job/" + url.PathEscape(job) + "/run/" + t.UTC().Format(timeKeyLayout)
	for _, ch := range c.in.History {
		if ch.Key == key && ch.Put {
			var r fleet.JobRecord
			if json.Unmarshal(ch.Value, &r) == nil {
				return r.Host
			}
		}
	}
	return ""
}

func fmtT(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000") }

// jobActive checks the end state: a job's `active` key (its runner's
// lease alive) with no run behind it is a run that will never end.
func (c *checker) jobActive() {
	started := map[int64]Event{}
	ended := map[int64]Event{}
	for _, e := range c.in.Events {
		switch e.Kind {
		case "job_start":
			started[e.Token] = e
		case "job_end":
			ended[e.Token] = e
		}
	}
	var keys []string
	for k := range c.in.Final {
		if strings.HasPrefix(k, c.in.Root+"job/") && strings.Contains(k, "/active/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv := c.in.Final[k]
		s, ok := started[kv.Create]
		switch e, done := ended[kv.Create]; {
		case !ok:
			c.violate("running with no run behind it", c.in.FinalAt, "%s (host %s, token %d) is alive but no run was started with its token",
				strings.TrimPrefix(k, c.in.Root), kv.Value, kv.Create)
		case done && e.Time().Add(c.in.TTL+2*c.in.Timeout).Before(c.in.FinalAt):
			c.violate("running with no run behind it", c.in.FinalAt, "%s (host %s, token %d) is alive though its run ended at %s",
				strings.TrimPrefix(k, c.in.Root), s.Host, kv.Create, e.Time().Format("15:04:05.000"))
		}
	}
}
