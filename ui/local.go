package ui

import (
	"context"
	"fmt"
	"slices"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/jobs"
	"berth.dev/berth/reconcile"
)

// Local is what this host's page reads: the envs the agent runs, each
// from its state dir, journal and job store (what `berth status`,
// `history` and `jobs` read), and its containers from Docker.
type Local struct {
	Host string
	Envs []LocalEnv
	// Containers lists env's managed containers (nil: no Docker client).
	// It is called with a deadline (dockerTimeout): a hung engine is
	// reported on the page, never waited for.
	Containers func(ctx context.Context, env string) ([]engine.Managed, error)
}

// LocalEnv is one env of this host.
type LocalEnv struct {
	Name string
	// Dir is the env's state dir (state.json), JournalDir its journal
	// (deploys/), and Jobs its job store.
	Dir        string
	JournalDir string
	Jobs       *jobs.Store
	// Agent, when set, is what the running agent knows beyond its files:
	// the pass in flight and the live revision's services.
	Agent func() AgentView
}

// AgentView is the running agent's view of one env.
type AgentView struct {
	// Pass is the deploy in flight, or a pass waiting for the fleet (nil:
	// none; a quiet poll is not shown).
	Pass *Pass
	// Services are the live revision's services (nil: not loaded yet).
	Services []ServiceSpec
}

// Pass is a pass in flight.
type Pass struct {
	Commit, Phase string
	Started       time.Time
	// Waiting names the coordinated step it waits for (a fleet's turn).
	Waiting string
}

// ServiceSpec is what the revision says of a service.
type ServiceSpec struct {
	Name, Role string
	Replicas   int
	// LB is the balancer it sits behind ("nginx upstream web").
	LB string
}

// ServicesOf is what the page shows of env's services, for AgentView.
func ServicesOf(env *envs.Env) []ServiceSpec {
	out := make([]ServiceSpec, 0, len(env.Services))
	for _, s := range env.Services {
		sp := ServiceSpec{Name: s.Name, Role: string(s.Berth.Role), Replicas: s.Berth.Replicas}
		if s.Berth.LB != nil {
			sp.LB = s.Berth.LB.String()
		}
		out = append(out, sp)
	}
	return out
}

// dockerTimeout bounds the container listing of a page.
const dockerTimeout = 2 * time.Second

// timelineDeploys is how many deploys the host page draws per env.
const timelineDeploys = 12

// hostPage builds the host's page.
func (s *Server) hostPage(ctx context.Context, now time.Time) hostView {
	l := s.Local
	v := hostView{Host: clean(l.Host)}
	if s.Fleet != nil {
		v.FleetHref = href("fleet")
	}
	for i := range l.Envs {
		v.Envs = append(v.Envs, s.envPage(ctx, &l.Envs[i], now))
	}
	return v
}

func (s *Server) envPage(ctx context.Context, e *LocalEnv, now time.Time) envView {
	v := envView{Name: clean(e.Name), HistoryHref: href("history") + "?env=" + queryEscape(e.Name)}
	st, err := reconcile.LoadState(e.Dir)
	if err != nil {
		v.Err = clean(err.Error())
	}
	recs, _, err := s.journal.list(e.JournalDir)
	if err != nil && v.Err == "" {
		v.Err = clean(err.Error())
	}
	byID := make(map[string]*reconcile.Record, 16)
	for _, r := range recs[:min(len(recs), 64)] {
		byID[r.ID] = r
	}
	var agent AgentView
	if e.Agent != nil {
		agent = e.Agent()
	}
	if lv := st.Live; lv != nil {
		v.Live = &revView{Commit: clean(lv.Commit), Short: short(lv.Commit), Since: lv.At, DeployID: clean(lv.DeployID)}
		if lv.DeployID != "" {
			v.Live.DeployH = href("deploy", e.Name, lv.DeployID)
		}
		if r := liveRecord(recs, byID, lv); r != nil {
			v.Live.Author, v.Live.Subject, v.Live.Signer = clean(r.Author), clean(r.Subject), clean(r.Signer)
		}
	}
	v.Marks = envMarks(e.Name, &st, recs, agent.Pass)
	var rows []timelineRow
	for _, r := range recs {
		if len(rows) == timelineDeploys {
			break
		}
		if isDeploy(r) {
			rows = append(rows, recordRow(e.Name, r, now))
		}
	}
	v.Timeline = layoutTimeline(rows)
	v.Services, v.Docker = s.services(ctx, e.Name, st.Live, agent.Services)
	v.Jobs = s.localJobs(e)
	return v
}

// liveRecord is the record that made the live revision live.
func liveRecord(recs []*reconcile.Record, byID map[string]*reconcile.Record, lv *reconcile.RevisionState) *reconcile.Record {
	if r := byID[lv.DeployID]; r != nil && r.Commit == lv.Commit {
		return r
	}
	for _, r := range recs {
		if r.Commit == lv.Commit && r.Subject != "" {
			return r
		}
	}
	return nil
}

// envMarks are the states to see first, most pressing first.
func envMarks(env string, st *reconcile.State, recs []*reconcile.Record, p *Pass) []mark {
	var ms []mark
	if f := st.Failed; f != nil {
		m := mark{Kind: "failed", Text: fmt.Sprintf("%s failed: %s", short(f.Commit), clean(f.Reason)), At: f.At, Commit: short(f.Commit)}
		if f.DeployID != "" {
			m.Href = href("deploy", env, f.DeployID)
		}
		ms = append(ms, m)
	}
	if h := st.FleetHeld; h != nil {
		ms = append(ms, mark{Kind: "held", Text: fmt.Sprintf("%s halted fleet-wide: %s", short(h.Commit), clean(h.Reason)), At: h.At, Commit: short(h.Commit)})
	}
	if h := st.Hold; h != nil {
		until := "berth resume"
		if h.UntilNewCommit {
			until = "a new commit or berth resume"
		}
		ms = append(ms, mark{Kind: "held", Text: fmt.Sprintf("held on %s by a rollback until %s", short(h.Commit), until), At: h.At, Commit: short(h.Commit)})
	}
	if pz := st.Pause; pz != nil {
		text := "paused: the branch is not followed until berth resume"
		if pz.Reason != "" {
			text = "paused: " + clean(pz.Reason)
		}
		ms = append(ms, mark{Kind: "paused", Text: text, By: clean(pz.By), At: pz.At})
	}
	if p != nil {
		m := mark{Kind: "deploying", Text: fmt.Sprintf("deploying %s: %s", short(p.Commit), clean(p.Phase)), At: p.Started, Commit: short(p.Commit)}
		if p.Waiting != "" {
			m.Kind, m.Text = "waiting", fmt.Sprintf("%s waits: %s", short(p.Commit), clean(p.Waiting))
		}
		ms = append(ms, m)
	}
	if len(recs) > 0 && recs[0].Result == reconcile.ResultOutage {
		r := recs[0]
		ms = append(ms, mark{Kind: "outage", Text: fmt.Sprintf("outage in %s (%d passes): %s", clean(r.Phase), r.Count(), clean(r.Reason)),
			At: r.Started, Commit: short(r.Commit), Href: href("deploy", env, r.ID)})
	}
	return ms
}

// services groups the env's containers by service, with what the live
// revision says of each.
func (s *Server) services(ctx context.Context, env string, live *reconcile.RevisionState, specs []ServiceSpec) ([]serviceView, string) {
	var cs []engine.Managed
	docker := ""
	if s.Local.Containers == nil {
		docker = "no Docker client"
	} else {
		cctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		var err error
		cs, err = s.Local.Containers(cctx, env)
		switch {
		case cctx.Err() != nil:
			docker = fmt.Sprintf("Docker did not answer within %s", dockerTimeout)
		case err != nil:
			docker = clean(err.Error())
		}
		cancel()
	}
	liveCommit := ""
	if live != nil {
		liveCommit = live.Commit
	}
	var out []serviceView
	idx := map[string]int{}
	get := func(name string) *serviceView {
		i, ok := idx[name]
		if !ok {
			i = len(out)
			idx[name] = i
			out = append(out, serviceView{Name: clean(name)})
		}
		return &out[i]
	}
	for _, sp := range specs {
		v := get(sp.Name)
		v.Role, v.Replicas, v.LB = clean(sp.Role), sp.Replicas, clean(sp.LB)
	}
	for _, c := range cs {
		if c.OneOff {
			continue
		}
		v := get(c.Service)
		if v.Role == "" {
			v.Role = clean(c.Role)
		}
		cur := c.Revision == liveCommit
		v.Containers = append(v.Containers, containerView{Name: clean(c.Name), State: clean(c.State), Health: clean(c.Health),
			Revision: short(c.Revision), Slot: c.Slot, Ports: cleanAll(c.Ports), Current: cur})
		if cur && c.State == "running" {
			v.Running++
			v.Health = worse(v.Health, c.Health)
		}
	}
	for i := range out {
		if out[i].Running == 0 && len(out[i].Containers) > 0 {
			out[i].Health = "down"
		}
	}
	return out, docker
}

// worse keeps the worse of two healths.
func worse(a, b string) string {
	rank := func(h string) int {
		switch h {
		case "unhealthy":
			return 3
		case "starting":
			return 2
		case "healthy":
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	if a == "" && b == "" {
		return "running"
	}
	return a
}

// localJobs are the live revision's jobs with their strips.
func (s *Server) localJobs(e *LocalEnv) []jobView {
	if e.Jobs == nil {
		return nil
	}
	l, err := e.Jobs.Listing()
	if err != nil || l == nil {
		return nil
	}
	var out []jobView
	for i := range l.Jobs {
		ent := &l.Jobs[i]
		runs, _ := e.Jobs.Newest(ent.Name, stripRuns)
		views := make([]runView, 0, min(len(runs), stripRuns))
		for j := range runs[:min(len(runs), stripRuns)] {
			views = append(views, localRun(e.Name, s.Local.Host, &runs[j]))
		}
		out = append(out, jobOf(e.Name, ent, views))
	}
	slices.SortFunc(out, func(a, b jobView) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// env finds a local env by name.
func (s *Server) env(name string) *LocalEnv {
	if s.Local == nil {
		return nil
	}
	for i := range s.Local.Envs {
		if s.Local.Envs[i].Name == name {
			return &s.Local.Envs[i]
		}
	}
	return nil
}
