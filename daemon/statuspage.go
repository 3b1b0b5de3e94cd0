package daemon

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/ui"
)

// newStatusPage is the status page on the local API's listener (package
// ui): this host's envs from their state dirs, journals and job stores,
// its containers from Docker, the running agent's pass in flight and live
// services, and, in a fleet, the fleet's view of the agent's envs. It
// builds nothing until the first request.
func newStatusPage(cfg *agentconfig.Config, eng *engine.Engine, rs []*envRuntime, fc *fleet.Client, log hclog.Logger) *ui.Server {
	host, _ := os.Hostname()
	if fc != nil {
		host = fc.Host()
	}
	local := &ui.Local{Host: host}
	if eng != nil {
		local.Containers = func(ctx context.Context, env string) ([]engine.Managed, error) { return eng.List(ctx, env) }
	}
	for _, r := range rs {
		local.Envs = append(local.Envs, ui.LocalEnv{Name: r.name, Dir: r.dir, JournalDir: cfg.Journal(r.name).Dir,
			Jobs: cfg.JobStore(r.name), Agent: r.pageView})
	}
	s := &ui.Server{Local: local, Log: log.Named("ui")}
	if fc != nil {
		s.Fleet = &ui.Fleet{Reader: &fleet.Overviews{Client: fc}, Envs: cfg.EnvNames(), Only: true, Host: fc.Host()}
	}
	return s
}

// pageView is what the page shows of the running agent: the pass in
// flight and the live revision's services.
func (r *envRuntime) pageView() ui.AgentView {
	var v ui.AgentView
	// A deploy in flight, or a pass waiting for the fleet; not the list
	// and fetch of every quiet poll (as STATUS= shows it).
	if a := r.live.Snapshot(); a != nil && a.Pass != nil && (a.Pass.Waiting != "" || a.Pass.Phase.Deploys()) {
		v.Pass = &ui.Pass{Commit: a.Pass.Commit, Phase: string(a.Pass.Phase), Started: a.Pass.Started, Waiting: string(a.Pass.Waiting)}
	}
	if sp := r.services.Load(); sp != nil {
		v.Services = *sp
	}
	return v
}

// liveServices keeps what the page shows of the live revision's services.
func (r *envRuntime) liveServices(env *envs.Env) {
	sp := ui.ServicesOf(env)
	r.services.Store(&sp)
}
