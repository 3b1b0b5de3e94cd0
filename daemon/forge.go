package daemon

import (
	"context"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/forge"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/promotion"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// The forge (docs/forge.md): with a forge: block each env's deploy result
// goes on the commit as a status, and envs with x-berth.promote propose
// promotion PRs (with forge.promote). Without a fleet the agent reports
// its own passes; with one, the agent holding the env's reporter role
// (fleet.LeadReporter) reports the whole fleet from the hosts' published
// states. Posting runs in the background: a deploy never waits for it.

// forgeSide is the agent's forge: the reporter and the promoters.
type forgeSide struct {
	rep       *forge.Reporter
	host      string
	fc        *fleet.Client // nil without a fleet
	promoters map[string]*promotion.Promoter
	log       hclog.Logger
}

// newForge makes the agent's forge side, or nil without a forge block.
func newForge(cfg *agentconfig.Config, src *gitsource.Source, fc *fleet.Client, version string, log hclog.Logger) (*forgeSide, error) {
	if cfg.Forge == nil {
		return nil, nil
	}
	fcfg := cfg.ForgeClient("")
	fcfg.UserAgent = "berth/" + version
	client, err := forge.New(fcfg, log)
	if err != nil {
		return nil, err
	}
	f := &forgeSide{fc: fc, promoters: map[string]*promotion.Promoter{}, log: log.Named("forge"),
		rep: forge.NewReporter(client, forge.ReporterOptions{Context: cfg.Forge.Context, TargetURL: cfg.Forge.TargetURL, Log: log})}
	if fc != nil {
		f.host = fc.Host()
	} else if f.host, err = os.Hostname(); err != nil {
		f.host = "this host"
	}
	if p := cfg.Forge.Promote; p != nil {
		pcfg := cfg.ForgeClient(p.TokenFile)
		pcfg.UserAgent = fcfg.UserAgent
		pc, err := forge.New(pcfg, log.Named("promote"))
		if err != nil {
			return nil, err
		}
		checkout := func(ctx context.Context, rev string) (string, string, string, error) {
			r, err := src.Fetch(ctx, rev, "")
			if err != nil {
				return "", "", "", err
			}
			dir, err := repoDir(r.Dir, cfg.Repo.Path)
			return dir, cfg.Repo.Path, r.Subject, err
		}
		for _, env := range cfg.EnvNames() {
			f.promoters[env] = promotion.New(pc, pc, checkout, promotion.Options{Env: env, Branch: cfg.Repo.Branch, Log: log})
		}
	}
	return f, nil
}

// run posts and promotes until ctx ends; with a fleet, it campaigns for
// each env's reporter role and reports the fleet while it holds it.
func (f *forgeSide) run(ctx context.Context, envNames []string) {
	var wg sync.WaitGroup
	goRun := func(fn func()) { wg.Add(1); go func() { defer wg.Done(); fn() }() }
	goRun(func() { f.rep.Run(ctx) })
	for _, p := range f.promoters {
		goRun(func() { p.Run(ctx) })
	}
	if f.fc != nil {
		for _, env := range envNames {
			goRun(func() { f.fc.LeadReporter(ctx, env, func(lctx context.Context) { f.reportFleet(lctx, env) }) })
		}
	}
	wg.Wait()
}

// report hands one env's status to the reporter and, when the reporter
// took it (not a straggler of an older commit), to its promoter.
func (f *forgeSide) report(env, rev string, st forge.State, description string) {
	if !f.rep.Update(env, rev, st, description) {
		return
	}
	if p := f.promoters[env]; p != nil {
		p.Observe(rev, st, description)
	}
}

// wire hooks one env's agent: its live revision's x-berth.promote for the
// promoter, and, without a fleet, its own passes for the reporter.
func (f *forgeSide) wire(r *envRuntime) Observer {
	onLive := r.agent.OnLive
	if p := f.promoters[r.name]; p != nil {
		r.agent.OnLive = func(env *envs.Env, commit string) {
			onLive(env, commit)
			p.SetSpec(commit, env.Promote)
		}
	}
	if f.fc != nil {
		return nil // the reporter role reads every host from etcd
	}
	return &selfView{f: f, env: r.name, view: forge.HostView{Host: f.host, Alive: true}}
}

// selfView is this host, the env's only one, as the reporter reads it.
type selfView struct {
	f    *forgeSide
	env  string
	mu   sync.Mutex
	view forge.HostView
}

// Progress is an Observer's: a deploy's phase, or the fleet's wait.
func (s *selfView) Progress(_ string, p reconcile.Progress) {
	if p.Commit == "" || !(p.Phase.Deploys() || p.Phase == reconcile.PhaseFleet) {
		return
	}
	s.mu.Lock()
	s.view.Deploying, s.view.Phase, s.view.Started, s.view.Waiting = p.Commit, string(p.Phase), p.Started, string(p.Waiting)
	v := s.view
	s.mu.Unlock()
	s.f.summarize(s.env, p.Commit, []forge.HostView{v}, nil, nil)
}

// PassEnded is an Observer's: how the pass ended, in the words the fleet
// publishes (reconcile.Result.Label).
func (s *selfView) PassEnded(_ string, ps reconcile.Pass) {
	r := ps.Record
	class := ps.Result.Label()
	if r.Commit == "" || ps.Result == reconcile.ResultInterrupted {
		return // no head listed, or the agent stopping
	}
	s.mu.Lock()
	s.view.Deploying, s.view.Waiting, s.view.Live = "", "", r.Live
	s.view.Result = &forge.Outcome{Revision: r.Commit, Class: class, Reason: status.OneLine(r.Reason), RolledBack: len(r.Undone) > 0, At: r.Finished}
	s.view.Held = ""
	if class == "held" {
		s.view.Held = status.OneLine(r.Reason)
	}
	v := s.view
	s.mu.Unlock()
	s.f.summarize(s.env, r.Commit, []forge.HostView{v}, nil, nil)
}

func (f *forgeSide) summarize(env, rev string, hosts []forge.HostView, halts []forge.HaltView, ro *forge.RolloutView) {
	st, d := forge.Summarize(rev, hosts, halts, ro)
	f.report(env, rev, st, d)
}

// reportFleet reports env from every host's published state while this
// agent holds the reporter role: one summary per change in etcd. When the
// role ends, the reporter and the promoter forget the env: what they had
// not done yet is the new holder's to do, from newer states.
func (f *forgeSide) reportFleet(ctx context.Context, env string) {
	defer func() {
		f.rep.Forget(env)
		if p := f.promoters[env]; p != nil {
			p.Reset()
		}
	}()
	waves := map[string]*forge.RolloutView{}
	for v := range f.fc.WatchHosts(ctx, env) {
		hosts := make([]forge.HostView, 0, len(v.Hosts))
		for _, h := range v.Hosts {
			hosts = append(hosts, hostView(h))
		}
		halts := make([]forge.HaltView, 0, len(v.Halts))
		for _, h := range v.Halts {
			halts = append(halts, forge.HaltView{Revision: h.Revision, Host: h.Host, Reason: status.OneLine(h.Reason)})
		}
		rev := forge.Target(hosts)
		if rev == "" {
			continue
		}
		ro, ok := waves[rev]
		if !ok {
			if w, err := f.fc.Wave(ctx, env, rev); err == nil && w != nil {
				ro = &forge.RolloutView{Canaries: w.Canaries, MaxParallel: w.MaxParallel}
				waves = map[string]*forge.RolloutView{rev: ro} // the latest only
			}
		}
		f.summarize(env, rev, hosts, halts, ro)
	}
}

// hostView is a fleet host as the reporter reads it.
func hostView(h fleet.HostStatus) forge.HostView {
	v := forge.HostView{Host: h.Host, Alive: h.Alive, Waiting: h.Waiting, Failed: h.Failed, Held: h.Held}
	if h.Live != nil {
		v.Live = h.Live.Revision
	}
	if h.Deploy != nil {
		v.Deploying, v.Phase, v.Started = h.Deploy.Revision, h.Deploy.Phase, h.Deploy.Started
	}
	if h.Result != nil {
		v.Result = &forge.Outcome{Revision: h.Result.Revision, Class: h.Result.Class, Reason: h.Result.Reason, RolledBack: h.Result.RolledBack, At: h.Result.At}
	}
	return v
}
