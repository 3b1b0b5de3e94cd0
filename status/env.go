package status

import (
	"context"
	"fmt"
	"time"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/engine"
	"berth.dev/berth/reconcile"
)

// Env is what `berth status --format json` and /api/status show of one
// env (docs/reference.md).
type Env struct {
	Env    string                   `json:"env"`
	Live   *reconcile.RevisionState `json:"live,omitempty"`
	Failed *reconcile.RevisionState `json:"failed,omitempty"`
	// Paused is this host's `berth pause`: who, when, why.
	Paused *reconcile.Pause `json:"paused,omitempty"`
	// FleetHeld is the head the fleet halted, as this host last saw it.
	FleetHeld *reconcile.FleetHeld `json:"fleet_held,omitempty"`
	// LastPass is the newest journal record: how the latest pass (or run
	// of passes ending alike) ended. LastDeploy is the newest that
	// deployed or failed something.
	LastPass   *reconcile.Record `json:"last_pass,omitempty"`
	LastDeploy *reconcile.Record `json:"last_deploy,omitempty"`
	Containers []engine.Managed  `json:"containers"`
	// Docker says why the containers are missing: the engine did not
	// answer within DockerTimeout (a hung dockerd) or failed.
	Docker string `json:"docker,omitempty"`
	// Agent is what the running agent knows beyond the state dir (the
	// local API only).
	Agent *Agent `json:"agent,omitempty"`
}

// All is the status of an agent that runs several envs.
type All struct {
	Envs []*Env `json:"envs"`
}

// DockerTimeout bounds the container listing of a status: a hung dockerd
// must not hang `berth status` or the API.
var DockerTimeout = 3 * time.Second

// Lister lists an env's managed containers (*engine.Engine).
type Lister interface {
	List(ctx context.Context, env string) ([]engine.Managed, error)
}

// Read is env's status. It reads the env's state, and its containers from
// Docker within DockerTimeout; an engine that does not answer is reported
// in Docker, never waited for. eng may be nil (no Docker client); live,
// when set, adds the running agent's view.
func Read(ctx context.Context, cfg *agentconfig.Config, env string, eng Lister, live *Live) (*Env, error) {
	st, err := reconcile.LoadState(cfg.EnvDir(env))
	if err != nil {
		return nil, err
	}
	out := &Env{Env: env, Live: st.Live, Failed: st.Failed, Paused: st.Pause, FleetHeld: st.FleetHeld, Containers: []engine.Managed{}}
	recs, err := cfg.Journal(env).List()
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if out.LastPass == nil {
			out.LastPass = &recs[i]
		}
		if recs[i].Result != reconcile.ResultUnchanged {
			out.LastDeploy = &recs[i]
			break
		}
	}
	if live != nil {
		out.Agent = live.Snapshot()
	}
	if eng == nil {
		out.Docker = "no Docker client"
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, DockerTimeout)
	defer cancel()
	ms, err := eng.List(ctx, env)
	switch {
	case ctx.Err() != nil:
		out.Docker = fmt.Sprintf("not answering within %s (a hung dockerd?)", DockerTimeout)
	case err != nil:
		out.Docker = err.Error()
	default:
		out.Containers = ms
	}
	return out, nil
}
