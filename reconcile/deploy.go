package reconcile

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/migrate"
)

// Deployer takes a host from what runs to one revision of an environment,
// in the phases of DESIGN.md §4, undoing what it did when a phase fails.
type Deployer struct {
	Images     Images
	Containers Containers
	Observer   Observer
	OneShots   OneShots
	// Signatures, when set, checks each image before prepare pulls it.
	Signatures Signatures
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
	BeforePhase func(phase Phase, res *Report) error
	// Progress, when set, is called whenever the deploy moves within a
	// phase (an image pulled, a container changed, a one-shot ended): the
	// watchdog tells a long phase from a wedged one by it. It must not
	// block.
	Progress func()

	// dialPort probes a published port (markLostPorts); tests set it.
	dialPort func(ctx context.Context, addr string) error
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
	// Live is the live revision: a replacement switches away from (and on
	// failure back to) its containers.
	Live string
}

// Report says what a deploy did, always, however it ended.
type Report struct {
	Actions  []Action
	OneShots []migrate.Record
	Phases   []Timing
	// Changed: the plan had something to do.
	Changed bool
	// Done is what the deploy changed on the host, in order ("start
	// web-3", "switch web to 127.0.0.1:32770", "run migrate"); Undone is
	// what its rollback put back. A migration that ran is never undone.
	Done   []string
	Undone []string
	// Phase is the phase the deploy ended in when it failed ("plan" for
	// the container listing, "prepare" for secrets and pulls).
	Phase Phase
	// Class is what ended a failed deploy (Unclassed when it succeeded).
	Class failure.Class
	// WatchUntil is when the watch of the switched servers ends (zero
	// without one), set when the watch begins.
	WatchUntil time.Time
}

// deploy is the state of one pass.
type deploy struct {
	*Deployer
	in     Input
	log    hclog.Logger // scoped with the phase being taken
	res    *Report
	undo   []undoStep
	remove []engine.Managed // retired at the end, on success
	mu     sync.Mutex       // guards in's maps, res.Done and undo in parallel steps
	// ahead are new containers being created ahead of their phase, by
	// service (replicas.go); aheadWG waits for them before a rollback.
	ahead   map[string]chan aheadSet
	aheadWG sync.WaitGroup
	// switchers are the servers' balancers, one per server for the
	// deploy; cuts the switches made, in order (for the watch and retire).
	switchers map[string]Switcher
	cuts      []*cut
	// stops wait for the old workers' stops, begun in the workers phase.
	stops []func() error
}

// undoStep puts back one change; what names it in Result.Undone.
type undoStep struct {
	what string
	run  func(context.Context) error
	// apart: the step touches nothing another apart step does (removing
	// one new container), so neighbouring ones run at once.
	apart bool
}

// Deploy plans and, when anything changes, carries out in.Revision. On
// failure everything done is undone in reverse and the error names the
// phase and service. The result is never nil: it says what changed, what
// was undone and which class of failure ended it (the error carries the
// same mark). A panic inside a phase is recovered, rolled back and
// returned as a verdict.
func (d *Deployer) Deploy(ctx context.Context, in Input) (*Report, error) {
	p, actual, err := d.plan(ctx, in)
	if err != nil {
		return p.fail(err)
	}
	if !p.res.Changed {
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
				return p.fail(asOutage(fmt.Errorf("plan: %w", err)))
			}
			p.done("remove leftover one-shot " + m.Name)
		}
	}
	steps := []struct {
		name Phase
		run  func(context.Context) error
		skip func() bool
	}{
		{PhasePrepare, p.prepare, nil},
		{PhaseCLI, p.cli, nil},
		{PhaseWorkers, p.workers, nil},
		{PhaseServers, p.servers, nil},
		{PhaseWatch, p.watch, p.nothingToWatch},
		{PhaseRetire, p.retire, nil},
	}
	for _, st := range steps {
		if st.skip != nil && st.skip() {
			continue
		}
		p.res.Phase, p.log = st.name, d.logger().With("env", in.Env.Name, "commit", short(in.Revision), "phase", st.name)
		if d.BeforePhase != nil {
			if err := d.BeforePhase(st.name, p.res); err != nil {
				p.rollback()
				return p.fail(asOutage(fmt.Errorf("%s: %w", st.name, err)))
			}
		}
		start := time.Now()
		err := p.step(ctx, st.name, st.run)
		p.res.Phases = append(p.res.Phases, Timing{Name: st.name, Duration: time.Since(start)})
		if err != nil {
			p.rollback()
			return p.fail(fmt.Errorf("%s: %w", st.name, err))
		}
	}
	p.res.Phase = ""
	return p.res, nil
}

// Plan resolves the revision's secrets (their digests are part of the
// config hashes) and compares it with the containers on the host, changing
// nothing: what `berth plan` prints is what a deploy would do.
func (d *Deployer) Plan(ctx context.Context, in Input) (*Report, error) {
	p, _, err := d.plan(ctx, in)
	if err != nil {
		return p.fail(err)
	}
	return p.res, nil
}

func (d *Deployer) plan(ctx context.Context, in Input) (p *deploy, actual []engine.Managed, err error) {
	hashes := make(map[string]string, len(in.Env.Services))
	for k, v := range in.Hashes {
		hashes[k] = v
	}
	for _, s := range in.Env.Services {
		if hashes[s.Name] == "" {
			hashes[s.Name] = s.Hash
		}
	}
	in.Hashes = hashes
	p = &deploy{Deployer: d, in: in, res: &Report{}, ahead: map[string]chan aheadSet{}, switchers: map[string]Switcher{}}
	p.log = d.logger().With("env", in.Env.Name, "commit", short(in.Revision), "phase", "prepare")
	p.res.Phase = PhasePrepare // secrets are prepared before the plan
	if err := p.step(ctx, "prepare", p.resolveSecrets); err != nil {
		return p, nil, fmt.Errorf("prepare: %w", err)
	}
	p.res.Phase, p.log = PhasePlan, d.logger().With("env", in.Env.Name, "commit", short(in.Revision), "phase", "plan")
	actual, err = d.Observer.List(ctx, in.Env.Name)
	if err != nil {
		return p, nil, asOutage(fmt.Errorf("plan: %w", err))
	}
	d.markLostPorts(ctx, in.Env, actual)
	p.res.Actions = plan(in.Env, in.Hashes, actual, in.Live)
	p.res.Changed = Changes(p.res.Actions)
	return p, actual, nil
}

// step runs one phase, turning a panic in it into a verdict (the stack goes
// to the log, never into the error).
func (p *deploy) step(ctx context.Context, name Phase, run func(context.Context) error) (err error) {
	defer recoverTo(&err, p.log, name)
	return run(ctx)
}

// fail ends the deploy with err, classed.
func (p *deploy) fail(err error) (*Report, error) {
	err = asOutage(err) // anything still unmarked is not certain enough for a verdict
	p.res.Class = failure.Of(err)
	return p.res, err
}

// done notes a change to the host.
func (p *deploy) done(what string) {
	p.mu.Lock()
	p.res.Done = append(p.res.Done, what)
	p.mu.Unlock()
	p.progressed()
}

func (p *deploy) progressed() {
	if p.Progress != nil {
		p.Progress()
	}
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
		ConfigHash: p.in.Hashes[a.Service], SpecHash: svc.Hash, Slot: slot, OneOff: oneOff,
		SecretEnv: p.in.SecretEnv[a.Service], SecretFiles: p.in.SecretFiles[a.Service], PublishLoopback: publish,
	})
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
