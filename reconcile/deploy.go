package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/migrate"
)

// Deployer takes a host from what runs to one revision of an environment,
// in the phases of DESIGN.md §4, undoing what it did when a phase fails.
type Deployer struct {
	Images     Images
	Containers Containers
	Observer   Observer
	OneShots   OneShots
	// Secrets resolves x-berth.secrets; nil when no Vault is configured
	// (envs validation then refuses services that declare secrets).
	Secrets Secrets
	// Switcher returns the load balancer of env (nil when it has none).
	Switcher func(env *envs.Env) Switcher
	Log      hclog.Logger

	// HealthTimeout bounds the wait for a new container to become healthy,
	// on top of its healthcheck's start_period. Default 60 s.
	HealthTimeout time.Duration
	// Settle is how long a container without a HEALTHCHECK must keep
	// running to count as started. Default 5 s.
	Settle time.Duration
	// Pulls is how many images are pulled at once. Default 3.
	Pulls int
	// BeforePhase, when set, is called before each phase is taken (the
	// journal writes its record there); an error stops the deploy.
	BeforePhase func(phase string, res *Result) error
}

// Input is one revision to deploy.
type Input struct {
	Env      *envs.Env
	Revision string
	// Hashes are the services' final config hashes (secret digests mixed
	// in); a missing entry falls back to the service's own hash.
	Hashes map[string]string
	// SecretEnv holds each service's resolved secrets as NAME=value.
	SecretEnv map[string][]string
	// SecretFiles holds each service's resolved secret files as name=value.
	SecretFiles map[string][]string
}

// Phase is one timed step of a deploy.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
}

// Result says what a deploy did.
type Result struct {
	Actions  []Action
	OneShots []migrate.Record
	Phases   []Phase
	Changed  bool
}

// deploy is the state of one pass.
type deploy struct {
	*Deployer
	in     Input
	log    hclog.Logger
	res    *Result
	undo   []func(context.Context) error
	remove []engine.Managed // retired at the end, on success
}

// Deploy plans and, when anything changes, carries out in.Revision. On
// failure everything done is undone in reverse and the error names the
// phase and service.
func (d *Deployer) Deploy(ctx context.Context, in Input) (*Result, error) {
	if in.Hashes == nil {
		in.Hashes = map[string]string{}
	}
	for _, s := range in.Env.Services {
		if in.Hashes[s.Name] == "" {
			in.Hashes[s.Name] = s.Hash
		}
	}
	p := &deploy{Deployer: d, in: in, res: &Result{}, log: d.logger().With("env", in.Env.Name, "commit", short(in.Revision))}
	if err := p.resolveSecrets(ctx); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	actual, err := d.Observer.List(ctx, in.Env.Name)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	p.res.Actions = Plan(in.Env, in.Hashes, actual)
	if p.res.Changed = Changes(p.res.Actions); !p.res.Changed {
		p.log.Debug("no change")
		return p.res, nil
	}
	for _, a := range p.res.Actions {
		p.log.Info("plan", "service", a.Service, "action", string(a.Kind), "reason", a.Reason)
	}
	// Leftover one-shot containers (an agent killed mid-run) go first.
	for _, m := range actual {
		if m.OneOff {
			if err := d.Containers.Remove(ctx, m.ID); err != nil {
				return nil, fmt.Errorf("plan: %w", err)
			}
		}
	}
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"prepare", p.prepare},
		{"cli", p.cli},
		{"workers", p.workers},
		{"servers", p.servers},
		{"retire", p.retire},
	}
	for _, st := range steps {
		if d.BeforePhase != nil {
			if err := d.BeforePhase(st.name, p.res); err != nil {
				p.rollback(st.name)
				return p.res, fmt.Errorf("%s: %w", st.name, err)
			}
		}
		start := time.Now()
		err := st.run(ctx)
		p.res.Phases = append(p.res.Phases, Phase{Name: st.name, Duration: time.Since(start)})
		if err != nil {
			p.rollback(st.name)
			return p.res, fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return p.res, nil
}

func (d *Deployer) logger() hclog.Logger {
	if d.Log == nil {
		return hclog.NewNullLogger()
	}
	return d.Log
}

func (p *deploy) request(a Action, slot int, oneOff, publish bool) (*engine.Request, error) {
	svc := p.in.Env.Service(a.Service)
	return engine.CreateRequest(p.in.Env.Project, *svc, engine.Placement{
		Project: p.in.Env.Project.Name, Env: p.in.Env.Name, Revision: p.in.Revision,
		ConfigHash: p.in.Hashes[a.Service], Slot: slot, OneOff: oneOff,
		SecretEnv: p.in.SecretEnv[a.Service], SecretFiles: p.in.SecretFiles[a.Service], PublishLoopback: publish,
	})
}

// nextSlot is one above every slot the service's containers use.
func nextSlot(a Action) int {
	slot := 0
	if a.Current != nil {
		slot = a.Current.Slot
	}
	for _, m := range a.Stale {
		slot = max(slot, m.Slot)
	}
	return slot + 1
}

// start creates and starts a new container for a and waits for its health.
// The container is removed on rollback.
func (p *deploy) start(ctx context.Context, a Action, publish bool) (string, error) {
	req, err := p.request(a, nextSlot(a), false, publish)
	if err != nil {
		return "", err
	}
	id, err := p.Containers.Create(ctx, req)
	if err != nil {
		return "", err
	}
	p.undo = append(p.undo, func(ctx context.Context) error { return p.Containers.Remove(ctx, id) })
	if err := p.Containers.Start(ctx, id); err != nil {
		return "", err
	}
	timeout := p.HealthTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if hc := p.in.Env.Service(a.Service).Config.HealthCheck; hc != nil && hc.StartPeriod != nil {
		timeout += time.Duration(*hc.StartPeriod)
	}
	settle := p.Settle
	if settle <= 0 {
		settle = 5 * time.Second
	}
	p.log.Info("container started", "service", a.Service, "container", req.Name)
	started := time.Now()
	if err := p.Observer.WaitHealthy(ctx, id, timeout, settle); err != nil {
		return "", fmt.Errorf("service %s: %w", a.Service, err)
	}
	p.log.Info("container healthy", "service", a.Service, "container", req.Name, "waited", time.Since(started).Round(time.Millisecond))
	return id, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
