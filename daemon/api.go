package daemon

import (
	"context"
	"fmt"
	"slices"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/api"
	"berth.dev/berth/engine"
	"berth.dev/berth/fleet"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/status"
	"github.com/hashicorp/go-hclog"
)

// apiFleet is /api/fleet: every host of each env (or of ?env=NAME), with
// the fleet-wide pause, rollback, halts and migrations, read from etcd at
// most every 10 s.
func apiFleet(ctx context.Context, cfg *agentconfig.Config, f *status.FleetCache) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	data, err := f.Get(ctx)
	if err != nil {
		return nil, err
	}
	out := []status.FleetEnv{}
	for _, e := range data {
		if slices.Contains(names, e.Env) {
			out = append(out, e)
		}
	}
	return status.FleetAll{Envs: out}, nil
}

// startAPI serves the local API until ctx ends. A listen failure is logged
// and the agent goes on without it: deploys matter more than metrics.
func startAPI(ctx context.Context, cfg *agentconfig.Config, eng *engine.Engine, src *gitsource.Source, m *agentMetrics, rs []*envRuntime, fc *fleet.Client, trigger func(), log hclog.Logger) {
	if cfg.API.Listen == "off" {
		return
	}
	l, err := api.Listen(cfg.API.Listen)
	if err != nil {
		log.Error("local API not started", "listen", cfg.API.Listen, "error", err)
		return
	}
	registerRuntimeMetrics(m.reg, src)
	var fcache *status.FleetCache
	if fc != nil {
		fcache = &status.FleetCache{C: fc, Names: cfg.EnvNames()}
	}
	s := &api.Server{
		Status:  func(ctx context.Context) (any, error) { return apiStatus(ctx, cfg, eng, rs) },
		History: func(ctx context.Context) (any, error) { return apiHistory(ctx, cfg) },
		Jobs:    func(ctx context.Context) (any, error) { return apiJobs(ctx, cfg) },
		Metrics: m.reg,
		BeforeScrape: func() {
			m.fetches.Reset()
			m.fetches.Add(float64(src.Fetches()))
			if fcache != nil {
				m.fleetHosts(fcache)
				m.clockSkew(fc)
			}
		},
		Trigger: trigger,
		Log:     log.Named("api"),
	}
	if fcache != nil {
		s.Fleet = func(ctx context.Context) (any, error) { return apiFleet(ctx, cfg, fcache) }
	}
	if f := cfg.API.WebhookSecretFile; f != "" {
		s.WebhookSecret = api.SecretFile(f)
	}
	page := newStatusPage(cfg, eng, rs, fc, log)
	s.Page, s.PageStop = page, page.Stop
	log.Info("local API listening", "listen", l.Addr().String(), "webhook", s.WebhookSecret != nil)
	go func() {
		if err := s.Serve(ctx, l); err != nil {
			log.Error("local API", "error", err)
		}
	}()
}

// apiEnvs is the env of ?env=NAME, or every env.
func apiEnvs(ctx context.Context, cfg *agentconfig.Config) ([]string, error) {
	names, err := status.SelectEnvs(cfg, api.Query(ctx).Get("env"))
	if err != nil {
		return nil, api.BadRequest{Err: err}
	}
	return names, nil
}

// apiStatus is /api/status: the env's status when the agent runs one (or
// ?env=NAME names one), else {"envs": [...]}, each with the running
// agent's view.
func apiStatus(ctx context.Context, cfg *agentconfig.Config, eng *engine.Engine, rs []*envRuntime) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var outs []*status.Env
	for _, name := range names {
		var live *status.Live
		for _, r := range rs {
			if r.name == name {
				live = r.live
			}
		}
		out, err := status.Read(ctx, cfg, name, eng, live)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", name, err)
		}
		outs = append(outs, out)
	}
	if len(outs) == 1 {
		return outs[0], nil
	}
	return status.All{Envs: outs}, nil
}

// apiHistory is /api/history: the newest 50 records of every env (or of
// ?env=NAME), newest first.
func apiHistory(ctx context.Context, cfg *agentconfig.Config) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return status.History(cfg, names, 50)
}

// apiJobs is /api/jobs: the jobs of every env (or of ?env=NAME).
func apiJobs(ctx context.Context, cfg *agentconfig.Config) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return status.Jobs(cfg, names)
}
