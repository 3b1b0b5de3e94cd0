package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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

// resolveSecrets resolves every service's secrets before the plan (their
// digests are part of the config hashes) and before anything is touched: a
// Vault outage fails the deploy here, with nothing changed.
func (p *deploy) resolveSecrets(ctx context.Context) error {
	var errs []error
	for _, s := range p.in.Env.Services {
		if len(s.Berth.Secrets) == 0 {
			continue
		}
		if p.Secrets == nil {
			errs = append(errs, fmt.Errorf("service %s declares secrets but no secrets backend is configured", s.Name))
			continue
		}
		env, digest, err := p.Secrets.Resolve(ctx, s.Name, s.Berth.Secrets)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", s.Name, err))
			continue
		}
		if p.in.SecretEnv == nil {
			p.in.SecretEnv = map[string][]string{}
		}
		p.in.SecretEnv[s.Name] = env
		sum := sha256.Sum256([]byte(p.in.Hashes[s.Name] + "\x00" + digest))
		p.in.Hashes[s.Name] = hex.EncodeToString(sum[:])
	}
	return errors.Join(errs...)
}

// prepare pulls every image the deploy needs before anything is touched: a
// registry outage fails here, with nothing changed.
func (p *deploy) prepare(ctx context.Context) error {
	images := map[string]string{} // image → a service using it
	for _, a := range p.res.Actions {
		if a.Kind == Create || a.Kind == Replace || a.Kind == Run {
			images[p.in.Env.Service(a.Service).Config.Image] = a.Service
		}
	}
	limit := p.Pulls
	if limit <= 0 {
		limit = 3
	}
	sem := make(chan struct{}, limit)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for img, svc := range images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := p.Images.EnsureImage(ctx, img); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("service %s: %w", svc, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return p.Images.EnsureProject(ctx, p.in.Env.Project)
}

func (p *deploy) request(a Action, slot int, oneOff, publish bool) (*engine.Request, error) {
	svc := p.in.Env.Service(a.Service)
	return engine.CreateRequest(p.in.Env.Project, *svc, engine.Placement{
		Project: p.in.Env.Project.Name, Env: p.in.Env.Name, Revision: p.in.Revision,
		ConfigHash: p.in.Hashes[a.Service], Slot: slot, OneOff: oneOff,
		SecretEnv: p.in.SecretEnv[a.Service], PublishLoopback: publish,
	})
}

// cli runs migrate then cli services from the new images; a failure
// aborts the deploy with nothing else changed.
func (p *deploy) cli(ctx context.Context) error {
	var jobs []migrate.Job
	for _, a := range p.res.Actions {
		if a.Kind != Run {
			continue
		}
		req, err := p.request(a, 1, true, false)
		if err != nil {
			return err
		}
		req.Name = fmt.Sprintf("%s-%s-run-%s", p.in.Env.Project.Name, a.Service, short(p.in.Revision))
		jobs = append(jobs, migrate.Job{Service: *p.in.Env.Service(a.Service), Request: req, Secrets: secretValues(p.in.SecretEnv[a.Service])})
	}
	if len(jobs) == 0 {
		return nil
	}
	recs, err := p.OneShots.Run(ctx, jobs)
	p.res.OneShots = recs
	return err
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

// workers replaces workers one by one: start new, wait healthy, stop old
// (stop old first for stop_first). Old containers are only stopped here and
// removed at retire, so a later failure can start them again.
func (p *deploy) workers(ctx context.Context) error {
	for _, a := range p.res.Actions {
		if a.Role != envs.RoleWorker || (a.Kind != Create && a.Kind != Replace) {
			continue
		}
		svc := p.in.Env.Service(a.Service)
		if svc.Berth.StopFirst && a.Current != nil {
			if err := p.stopOld(ctx, a); err != nil {
				return err
			}
		}
		if _, err := p.start(ctx, a, false); err != nil {
			return err
		}
		if !svc.Berth.StopFirst && a.Current != nil {
			if err := p.stopOld(ctx, a); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *deploy) stopOld(ctx context.Context, a Action) error {
	old := *a.Current
	if err := p.Containers.Stop(ctx, old.ID, nil); err != nil {
		return err
	}
	p.undo = append(p.undo, func(ctx context.Context) error { return p.Containers.Start(ctx, old.ID) })
	p.remove = append(p.remove, old)
	return nil
}

// servers starts each new server beside the old one, waits for its health
// gate, then switches the load balancer. The old server is not touched
// until the new one passed its gate and the switch is done.
func (p *deploy) servers(ctx context.Context) error {
	for _, a := range p.res.Actions {
		if a.Role != envs.RoleServer {
			continue
		}
		port := strconv.Itoa(p.in.Env.Service(a.Service).Berth.Port) + "/tcp"
		if a.Kind == Keep {
			// An agent killed between a new server's health gate and the
			// switch left the balancer on the old one: point it at the
			// server being kept (a no-op when it already is).
			if err := p.ensureBalancer(ctx, a, port); err != nil {
				return err
			}
			continue
		}
		if a.Kind != Create && a.Kind != Replace {
			continue
		}
		id, err := p.start(ctx, a, true)
		if err != nil {
			return err
		}
		hostPort, err := p.Observer.HostPort(ctx, id, port)
		if err != nil {
			return err
		}
		if err := p.gateWithoutHealthcheck(ctx, a, id, hostPort); err != nil {
			return err
		}
		sw, err := p.balancer(a)
		if err != nil {
			return err
		}
		var oldBackends []string
		if a.Current != nil && a.Current.State == "running" {
			if hp, err := p.Observer.HostPort(ctx, a.Current.ID, port); err == nil {
				oldBackends = []string{"127.0.0.1:" + hp}
			}
		}
		switchStart := time.Now()
		if err := sw.Switch(ctx, []string{"127.0.0.1:" + hostPort}); err != nil {
			return fmt.Errorf("service %s: %w", a.Service, err)
		}
		if oldBackends != nil {
			p.undo = append(p.undo, func(ctx context.Context) error { return sw.Switch(ctx, oldBackends) })
		}
		p.log.Info("load balancer switched", "service", a.Service, "backend", "127.0.0.1:"+hostPort, "took", time.Since(switchStart).Round(time.Millisecond))
		if a.Current != nil {
			p.remove = append(p.remove, *a.Current)
		}
	}
	return nil
}

// gateWithoutHealthcheck is the health gate of a server whose image has no
// HEALTHCHECK: berth warns and waits until an HTTP GET of / on its port gets
// an answer below 500. (A TCP connect proves nothing: Docker's proxy accepts
// on the published port whether or not the app listens.)
func (p *deploy) gateWithoutHealthcheck(ctx context.Context, a Action, id, hostPort string) error {
	has, err := p.Observer.HasHealthcheck(ctx, id)
	if err != nil || has {
		return err
	}
	p.log.Warn("server has no HEALTHCHECK; gating on an HTTP answer from its port instead", "service", a.Service)
	timeout := p.HealthTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	url := "http://127.0.0.1:" + hostPort + "/"
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service %s: no HEALTHCHECK, and %s did not answer within %s: %w", a.Service, url, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *deploy) balancer(a Action) (Switcher, error) {
	var sw Switcher
	if p.Switcher != nil {
		sw = p.Switcher(p.in.Env)
	}
	if sw == nil {
		return nil, fmt.Errorf("service %s: no load balancer configured", a.Service)
	}
	return sw, nil
}

func (p *deploy) ensureBalancer(ctx context.Context, a Action, port string) error {
	hp, err := p.Observer.HostPort(ctx, a.Current.ID, port)
	if err != nil {
		return err
	}
	sw, err := p.balancer(a)
	if err != nil {
		return err
	}
	if err := sw.Switch(ctx, []string{"127.0.0.1:" + hp}); err != nil {
		return fmt.Errorf("service %s: %w", a.Service, err)
	}
	return nil
}

// retire stops and removes what the new revision replaced: old servers
// (the balancer no longer sends them anything), old workers, stale
// containers and services gone from the config.
func (p *deploy) retire(ctx context.Context) error {
	for _, a := range p.res.Actions {
		p.remove = append(p.remove, a.Stale...)
		if a.Kind == Remove && a.Current != nil {
			p.remove = append(p.remove, *a.Current)
		}
	}
	// From here on the revision is live: failures to clean up are logged,
	// not rolled back.
	p.undo = nil
	// In parallel: each is already out of service, and a graceful stop
	// takes as long as the slowest app's shutdown, not their sum.
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, m := range p.remove {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Containers.Stop(ctx, m.ID, nil)
			if err == nil {
				err = p.Containers.Remove(ctx, m.ID)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			p.log.Info("container retired", "service", m.Service, "container", m.Name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		p.log.Warn("retire incomplete; the next pass removes the rest", "error", err)
	}
	return nil
}

// rollback undoes, in reverse, what the failed deploy did: balancer back,
// new containers removed, old workers started again.
func (p *deploy) rollback(phase string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := len(p.undo) - 1; i >= 0; i-- {
		if err := p.undo[i](ctx); err != nil {
			p.log.Error("rollback step failed", "phase", phase, "error", err)
		}
	}
	p.undo = nil
}

func secretValues(env []string) []string {
	var out []string
	for _, kv := range env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				out = append(out, kv[i+1:])
				break
			}
		}
	}
	return out
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
