package ui

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/status"
)

// The fleet's page, built from one overview read (fleet.Overview).

// hostsPerPage is how many hosts a fleet page lists per env.
const hostsPerPage = 100

type fleetView struct {
	// Read says why etcd's answer is missing (unreachable, slow) and
	// when the fleet shown was read: the page says so instead of failing.
	Read fleetRead
	Envs []fleetEnvView
	// HostHref links this host's own page (on the agent's listener).
	HostHref string
}

type fleetEnvView struct {
	Name  string
	Marks []mark // paused, rolled back, halted
	Good  *revView
	// Revisions counts the live hosts by the revision they serve, most
	// hosts first; RevBar draws them as one stacked bar.
	Revisions []revCount
	RevBar    timeline
	Rollout   *rolloutView
	// Timeline draws the newest rollouts, one bar each.
	Timeline timeline
	// Hosts is one page of the hosts, filtered.
	Hosts               []hostRow
	HostsTotal, Shown   int
	Alive, Gone, Skewed int
	Page, Pages         int
	Prev, Next          string
	State, Query        string
	States              []string
	Migrations          []migrationRow
	Jobs                []jobView
}

type revCount struct {
	Short, Author, Subject string
	Hosts                  int
}

type rolloutView struct {
	Short, By             string
	Created               time.Time
	Canaries              []canaryRow
	MaxParallel           string
	Known                 int
	OK, Failed, Deploying int
	Waiting               int
	Slots                 []slotRow
	Queued                int64
	Gate                  string // the canary gate: waiting, pausing, open
	Halt                  string
	Bar                   timeline
}

type canaryRow struct{ Host, Href, State string }

type slotRow struct {
	Index      int
	Host, Href string
	Since      time.Time
}

type hostRow struct {
	Name, Href      string
	State, Class    string // alive, gone, paused, held, failed, deploying, waiting
	Live            string
	Author, Subject string
	Deploy, Waiting string
	Result, Reason  string
	Health          string
	Version         string
	LastSeen        time.Time
	Skew            string
	Skewed          bool
}

type migrationRow struct {
	Service, Short, Status, Class, Host, Reason string
	Started, Ended                              time.Time
}

var hostStates = func() (s []string) {
	for _, st := range status.HostStates {
		s = append(s, string(st))
	}
	return s
}()

// fleetEnvOf builds one env's part of the fleet page; q filters and pages
// its hosts when it names this env (?env=E&state=S&q=TEXT&page=N).
func fleetEnvOf(o *fleet.Overview, q url.Values, now time.Time) fleetEnvView {
	v := fleetEnvView{Name: clean(o.Env), States: hostStates}
	if p := o.Control.Pause; p != nil {
		v.Marks = append(v.Marks, mark{Kind: "paused", Text: "paused fleet-wide" + reasonOf(p.Reason), By: clean(p.By), At: p.At})
	}
	if r := o.Control.Rollback; r != nil {
		v.Marks = append(v.Marks, mark{Kind: "held", Text: fmt.Sprintf("rolled back fleet-wide to %s (head %s halted)%s", short(r.Commit), short(r.Head), reasonOf(r.Reason)),
			By: clean(r.By), At: r.At, Commit: short(r.Commit)})
	}
	for _, h := range o.Halts {
		v.Marks = append(v.Marks, mark{Kind: "halted", Text: fmt.Sprintf("%s halted fleet-wide: %s", short(h.Revision), clean(h.Reason)),
			By: clean(h.Host), At: h.At, Commit: short(h.Revision)})
	}
	if g := o.Good; g != nil {
		v.Good = &revView{Short: short(g.Revision), Since: g.At}
	}
	counts := map[string]*revCount{}
	for i := range o.Hosts {
		h := &o.Hosts[i]
		if !h.Alive {
			v.Gone++
			continue
		}
		v.Alive++
		if status.Skewed(h) {
			v.Skewed++
		}
		rev, rc := "", (*revCount)(nil)
		if h.Live != nil {
			rev = h.Live.Revision
		}
		if rc = counts[rev]; rc == nil {
			rc = &revCount{Short: short(rev)}
			if rev == "" {
				rc.Short = "none"
			}
			counts[rev] = rc
		}
		if h.Live != nil && rc.Subject == "" {
			rc.Author, rc.Subject = clean(h.Live.Author), clean(h.Live.Subject)
		}
		rc.Hosts++
	}
	for _, rc := range counts {
		v.Revisions = append(v.Revisions, *rc)
	}
	slices.SortFunc(v.Revisions, func(a, b revCount) int {
		if a.Hosts != b.Hosts {
			return b.Hosts - a.Hosts
		}
		return strings.Compare(a.Short, b.Short)
	})
	v.RevBar = revisionBar(v.Revisions)
	if len(o.Rollouts) > 0 {
		v.Rollout = rolloutOf(o, &o.Rollouts[0])
	}
	v.Timeline = rolloutTimeline(o, now)
	v.hostsPage(o, q)
	for _, m := range o.Migrations {
		cls := "ok"
		switch m.Status {
		case fleet.MigrationFailed:
			cls = "fail"
		case fleet.MigrationInterrupted:
			cls = "interrupted"
		case fleet.MigrationRunning:
			cls = "run"
		}
		v.Migrations = append(v.Migrations, migrationRow{Service: clean(m.Service), Short: short(m.Revision), Status: clean(m.Status), Class: cls,
			Host: clean(m.Host), Reason: clean(m.Reason), Started: m.Started, Ended: m.Ended})
	}
	for _, jh := range o.Jobs {
		runs := make([]runView, 0, min(len(jh.Runs), stripRuns))
		for i := range jh.Runs[:min(len(jh.Runs), stripRuns)] {
			runs = append(runs, fleetRun(o.Env, &jh.Runs[i]))
		}
		j := jobView{Env: clean(o.Env), Name: clean(jh.Job), Href: href("fleet", "jobs", o.Env, jh.Job)}
		if len(runs) > 0 {
			last := runs[0]
			j.Last = &last
		}
		j.Runs = slices.Clone(runs)
		slices.Reverse(j.Runs)
		v.Jobs = append(v.Jobs, j)
	}
	return v
}

func reasonOf(r string) string {
	if r == "" {
		return ""
	}
	return ": " + clean(r)
}

// hostRowOf is one host in the fleet's table.
func hostRowOf(env string, h *fleet.HostStatus) hostRow {
	r := hostRow{Name: clean(h.Host), Href: href("fleet", "host", env, h.Host), Version: clean(h.Version), LastSeen: h.LastSeen,
		Waiting: clean(h.Waiting), Health: healthLine(h.Health)}
	r.State = string(status.HostStateOf(h))
	if r.State == string(status.HostSkewed) {
		r.State = string(status.HostAlive) // the Skewed mark says it
	}
	r.Class = r.State
	if h.Live != nil {
		r.Live, r.Author, r.Subject = short(h.Live.Revision), clean(h.Live.Author), clean(h.Live.Subject)
	}
	if d := h.Deploy; d != nil {
		r.Deploy = short(d.Revision) + " " + clean(d.Phase)
	}
	if res := h.Result; res != nil {
		r.Result, r.Reason = clean(res.Class), clean(res.Reason)
	}
	if h.ClockSkew != 0 {
		r.Skew = h.ClockSkew.Round(time.Second).String()
	}
	r.Skewed = status.Skewed(h)
	return r
}

func healthLine(h map[string]string) string {
	if len(h) == 0 {
		return ""
	}
	parts := make([]string, 0, len(h))
	for _, s := range slices.Sorted(maps.Keys(h)) {
		parts = append(parts, s+"="+h[s])
	}
	return clean(strings.Join(parts, " "))
}

// hostsPage filters the env's hosts by state and name and keeps one page.
func (v *fleetEnvView) hostsPage(o *fleet.Overview, q url.Values) {
	mine := q.Get("env") == o.Env
	state, text := "", ""
	page := 1
	if mine {
		if slices.Contains(hostStates, q.Get("state")) {
			state = q.Get("state")
		}
		text = q.Get("q")
		if len(text) > maxQuery {
			text = text[:maxQuery]
		}
		page, _ = strconv.Atoi(q.Get("page"))
	}
	v.State, v.Query = state, clean(text)
	v.HostsTotal = len(o.Hosts)
	var match []*fleet.HostStatus
	for i := range o.Hosts {
		h := &o.Hosts[i]
		if text != "" && !strings.Contains(strings.ToLower(h.Host), strings.ToLower(text)) {
			continue
		}
		if state != "" && !hasState(h, state) {
			continue
		}
		match = append(match, h)
	}
	v.Shown = len(match)
	v.Pages = max(1, (len(match)+hostsPerPage-1)/hostsPerPage)
	v.Page = min(max(page, 1), v.Pages)
	from := (v.Page - 1) * hostsPerPage
	for _, h := range match[from:min(from+hostsPerPage, len(match))] {
		v.Hosts = append(v.Hosts, hostRowOf(o.Env, h))
	}
	pageHref := func(n int) string {
		qq := url.Values{"env": {o.Env}, "page": {strconv.Itoa(n)}}
		if state != "" {
			qq.Set("state", state)
		}
		if text != "" {
			qq.Set("q", text)
		}
		return "?" + qq.Encode() + "#hosts-" + url.PathEscape(o.Env)
	}
	if v.Page > 1 {
		v.Prev = pageHref(v.Page - 1)
	}
	if v.Page < v.Pages {
		v.Next = pageHref(v.Page + 1)
	}
}

func hasState(h *fleet.HostStatus, state string) bool {
	switch state {
	case "skewed":
		return status.Skewed(h)
	case "failed":
		return h.Failed != "" || (h.Result != nil && h.Result.Class == "verdict")
	}
	return hostRowOf("", h).State == state
}
