package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
)

// Engine is what a run needs of the Docker engine (*engine.Engine).
type Engine interface {
	EnsureImage(ctx context.Context, ref string) (pulled bool, err error)
	EnsureProject(ctx context.Context, p *types.Project) error
	Create(ctx context.Context, req *engine.Request) (string, error)
	Start(ctx context.Context, id string) error
	WaitExit(ctx context.Context, id string) (int, error)
	Stop(ctx context.Context, id string, grace *time.Duration) error
	Kill(ctx context.Context, id string) error
	Logs(ctx context.Context, id string, max int) (stdout, stderr []byte, dropped [2]int64, err error)
	Remove(ctx context.Context, id string) error
	ListJobRuns(ctx context.Context, env string) ([]engine.JobContainer, error)
}

// Secrets resolves the inherited service's secrets for a run (the same
// resolver deploys use; values go to Docker only).
type Secrets interface {
	Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) (env []string, digest string, err error)
}

// Causes a run is cut short for.
var (
	errReplaced = errors.New("replaced by a newer run (concurrency: replace)")
	errStopping = errors.New("the agent stopped during the run")
)

// Def is a job of the live revision, ready to run.
type Def struct {
	Spec     envs.JobSpec
	Hash     string // changes when anything that affects a run changes
	Revision string
	Schedule *Schedule
	project  *types.Project
	service  *envs.Service // nil for a job with its own image
}

// Image is the image a run uses.
func (d *Def) Image() string {
	if d.Spec.Image != "" {
		return d.Spec.Image
	}
	if d.service != nil {
		return d.service.Config.Image
	}
	return ""
}

// Defs turns an environment's x-berth.jobs into runnable definitions.
func Defs(env *envs.Env, revision string) ([]*Def, error) {
	var out []*Def
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(env.Jobs)) {
		spec := env.Jobs[name]
		sched, err := ParseSchedule(spec.Schedule, spec.Timezone)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", name, err))
			continue
		}
		d := &Def{Spec: spec, Revision: revision, Schedule: sched, project: env.Project}
		if spec.Service != "" {
			if d.service = env.Service(spec.Service); d.service == nil {
				errs = append(errs, fmt.Errorf("job %s: no service %q", name, spec.Service))
				continue
			}
		}
		h := sha256.New()
		json.NewEncoder(h).Encode(spec)
		if d.service != nil {
			fmt.Fprintf(h, "%s\x00%v\x00%v", d.service.Hash, d.service.Berth.Secrets, d.service.Berth.SecretFiles)
		}
		d.Hash = hex.EncodeToString(h.Sum(nil))[:16]
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}

// Scheduler runs the live revision's jobs on their schedules.
type Scheduler struct {
	Env     string
	Store   *Store
	Engine  Engine
	Secrets Secrets // nil: a job whose service has secrets fails
	Log     hclog.Logger
	// MaxOutput is the tail of stdout and of stderr kept per run
	// (default 1 MiB each).
	MaxOutput int
	// StopGrace is how long a replaced or interrupted run gets between
	// its stop signal and SIGKILL (default 10 s).
	StopGrace time.Duration
	// OnFinish, when set, is told of every run that ended (metrics,
	// notifications). It must not block.
	OnFinish func(r Run, spec envs.JobSpec)

	// Now and Jitter are the clock and the random delay; tests set them.
	Now    func() time.Time
	Jitter func(max time.Duration) time.Duration

	mu       sync.Mutex
	ctx      context.Context
	revision string
	entries  map[string]*entry
	seen     map[string]bool
	active   map[string]*active // by run id
	wake     chan struct{}
	wg       sync.WaitGroup
	pending  []pendingRun // asked for before Run started
}

type pendingRun struct{ job, request string }

type entry struct {
	def     *Def
	next    time.Time  // the schedule's next time
	due     time.Time  // next plus jitter: when the run starts
	catchUp *time.Time // a missed run to make at once (missed: run_once)
}

type active struct {
	run    *Run
	def    *Def
	cancel context.CancelCauseFunc
	done   chan struct{}
}

func (s *Scheduler) init() {
	if s.entries == nil {
		s.entries, s.seen, s.active = map[string]*entry{}, map[string]bool{}, map[string]*active{}
		s.wake = make(chan struct{}, 1)
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Jitter == nil {
		s.Jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max)
		}
	}
	if s.Log == nil {
		s.Log = hclog.NewNullLogger()
	}
	if s.MaxOutput <= 0 {
		s.MaxOutput = 1 << 20
	}
	if s.StopGrace <= 0 {
		s.StopGrace = 10 * time.Second
	}
}

// Update makes the jobs of env (the live revision) the scheduled set: new
// jobs are added, changed ones (by hash) take their new definition from now
// on — a run in flight finishes under the old one — and removed ones stop
// being scheduled. Calling it again with the same revision is cheap.
func (s *Scheduler) Update(env *envs.Env, revision string) error {
	defs, err := Defs(env, revision)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	now := s.Now()
	changed := s.revision != revision
	s.revision = revision
	want := map[string]bool{}
	for _, d := range defs {
		want[d.Spec.Name] = true
		e := s.entries[d.Spec.Name]
		switch {
		case e == nil:
			e = &entry{def: d}
			s.entries[d.Spec.Name] = e
			s.schedule(e, now)
			if !s.seen[d.Spec.Name] {
				s.seen[d.Spec.Name] = true
				s.missed(e, now)
			}
			s.Log.Info("job scheduled", "job", d.Spec.Name, "schedule", d.Spec.Schedule, "next", e.next)
			changed = true
		case e.def.Hash != d.Hash:
			sameSchedule := e.def.Spec.Schedule == d.Spec.Schedule && e.def.Spec.Timezone == d.Spec.Timezone
			e.def = d
			if !sameSchedule {
				s.schedule(e, now)
			}
			s.Log.Info("job changed", "job", d.Spec.Name, "schedule", d.Spec.Schedule, "next", e.next)
			changed = true
		default:
			e.def = d // same job; the revision it comes from moved
		}
	}
	for name := range s.entries {
		if !want[name] {
			delete(s.entries, name)
			s.Log.Info("job removed", "job", name)
			changed = true
		}
	}
	if changed {
		s.saveListing()
		s.poke()
	}
	return err
}

// schedule sets e's next time from now.
func (s *Scheduler) schedule(e *entry, now time.Time) {
	e.next = e.def.Schedule.Next(now)
	e.due = e.next.Add(s.Jitter(e.def.Spec.Jitter))
}

// missed applies the job's missed policy to the times it was due while the
// agent was not running: since its last scheduled run on record. At most
// one catch-up run, however many were missed.
func (s *Scheduler) missed(e *entry, now time.Time) {
	runs, err := s.Store.Runs(e.def.Spec.Name)
	if err != nil {
		s.Log.Warn("job history unreadable", "job", e.def.Spec.Name, "error", err)
		return
	}
	var last time.Time
	for _, r := range runs {
		if (r.Trigger == TriggerSchedule || r.Trigger == TriggerMissed) && r.Scheduled.After(last) {
			last = r.Scheduled
		}
	}
	if last.IsZero() {
		return // a new job: nothing was missed
	}
	n, latest := e.def.Schedule.Missed(last, now, 1000)
	if n == 0 {
		return
	}
	count := fmt.Sprint(n)
	if n >= 1000 {
		count = "1000 or more"
	}
	if e.def.Spec.Missed == "run_once" {
		s.Log.Info("job missed runs while the agent was down: running once now", "job", e.def.Spec.Name, "missed", count)
		e.catchUp = &latest
		return
	}
	s.Log.Info("job missed runs while the agent was down: skipped", "job", e.def.Spec.Name, "missed", count)
	r := &Run{ID: NewID(now), Job: e.def.Spec.Name, Trigger: TriggerMissed, Scheduled: latest, Status: StatusSkipped,
		Revision: e.def.Revision, JobHash: e.def.Hash, Image: e.def.Image(),
		Reason: fmt.Sprintf("%s run(s) missed while the agent was not running (missed: skip)", count)}
	s.record(r, e.def.Spec)
}

// Run schedules until ctx ends; then runs in flight are stopped and
// recorded as interrupted before it returns.
func (s *Scheduler) Run(ctx context.Context) {
	s.mu.Lock()
	s.init()
	s.ctx = ctx
	s.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := s.tick()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			s.wg.Wait()
			return
		case <-timer.C:
		case <-s.wake:
		}
	}
}

// tick starts the runs that are due and returns how long until the next.
func (s *Scheduler) tick() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	wait := time.Hour
	changed := false
	for _, p := range s.pending {
		if e := s.entries[p.job]; e != nil {
			s.start(e.def, time.Time{}, TriggerManual, p.request)
		}
	}
	s.pending = nil
	for _, name := range slices.Sorted(maps.Keys(s.entries)) {
		e := s.entries[name]
		if e.catchUp != nil {
			s.start(e.def, *e.catchUp, TriggerMissed, "")
			e.catchUp, changed = nil, true
		}
		if e.next.IsZero() {
			continue
		}
		if !now.Before(e.due) {
			s.start(e.def, e.next, TriggerSchedule, "")
			e.next = e.def.Schedule.Next(e.next)
			if !e.next.IsZero() && !e.next.After(now) {
				// Fell behind (a suspended host, a clock step): resume
				// from now rather than replaying every missed time.
				n, _ := e.def.Schedule.Missed(e.next.Add(-time.Nanosecond), now, 1000)
				s.Log.Warn("job fell behind its schedule; missed runs skipped", "job", name, "missed", n)
				e.next = e.def.Schedule.Next(now)
			}
			e.due = e.next.Add(s.Jitter(e.def.Spec.Jitter))
			changed = true
		}
		if !e.next.IsZero() {
			wait = min(wait, e.due.Sub(now))
		}
	}
	if changed {
		s.saveListing()
	}
	return max(wait, 0)
}

// RunNow starts a run of job outside its schedule (berth jobs run),
// respecting its concurrency policy. request ties the run to the request.
// It returns the run's id ("" when the scheduler has not started yet: the
// run starts with it).
func (s *Scheduler) RunNow(job, request string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	e := s.entries[job]
	if e == nil {
		return "", fmt.Errorf("no job %q in the live revision", job)
	}
	if s.ctx == nil {
		// Not running yet: the run starts when Run does.
		s.pending = append(s.pending, pendingRun{job: job, request: request})
		return "", nil
	}
	return s.start(e.def, time.Time{}, TriggerManual, request), nil
}

// TakeRequests starts the runs `berth jobs run` asked for.
func (s *Scheduler) TakeRequests() {
	reqs, err := s.Store.TakeRequests()
	if err != nil {
		s.Log.Warn("job requests", "error", err)
	}
	for _, r := range reqs {
		if _, err := s.RunNow(r.Job, r.ID); err != nil {
			s.Log.Warn("job run request refused", "job", r.Job, "error", err)
			s.mu.Lock()
			s.record(&Run{ID: NewID(s.Now()), Job: r.Job, Trigger: TriggerManual, Status: StatusSkipped, Reason: err.Error(), Request: r.ID}, envs.JobSpec{History: 50})
			s.mu.Unlock()
		}
	}
}

// start begins a run of d under its concurrency policy (s.mu held).
func (s *Scheduler) start(d *Def, scheduled time.Time, trigger, request string) string {
	now := s.Now()
	r := &Run{ID: NewID(now), Job: d.Spec.Name, Trigger: trigger, Scheduled: scheduled, Status: StatusRunning,
		Revision: d.Revision, JobHash: d.Hash, Image: d.Image(), Request: request}
	var running []*active
	for _, a := range s.active {
		if a.run.Job == d.Spec.Name {
			running = append(running, a)
		}
	}
	if len(running) > 0 {
		switch d.Spec.Concurrency {
		case envs.ConcurrencyAllow:
			running = nil
		case envs.ConcurrencyReplace:
			for _, a := range running {
				s.Log.Info("job run replaced", "job", d.Spec.Name, "run", a.run.ID, "by", r.ID)
				a.cancel(errReplaced)
			}
		default:
			r.Status, r.Reason = StatusSkipped, fmt.Sprintf("run %s is still running (concurrency: forbid)", running[0].run.ID)
			s.Log.Info("job run skipped", "job", d.Spec.Name, "reason", r.Reason)
			s.record(r, d.Spec)
			return r.ID
		}
	}
	if err := s.Store.Save(r); err != nil {
		// Without a record the run could not be reaped after a crash.
		s.Log.Error("job run not started", "job", d.Spec.Name, "error", err)
		return r.ID
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	a := &active{run: r, def: d, cancel: cancel, done: make(chan struct{})}
	s.active[r.ID] = a
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(a.done)
		defer cancel(nil)
		for _, old := range running {
			<-old.done // replace: the old run is gone before the new starts
		}
		s.execute(ctx, a)
		s.mu.Lock()
		delete(s.active, r.ID)
		s.record(r, d.Spec)
		s.saveListing()
		s.mu.Unlock()
	}()
	s.saveListing()
	return r.ID
}

// execute makes one run: image, secrets, container, wait (with timeout),
// output, removal. It fills in r; the caller records it.
func (s *Scheduler) execute(ctx context.Context, a *active) {
	r, d := a.run, a.def
	log := s.Log.With("job", r.Job, "run", r.ID)
	r.Started = s.Now()
	defer func() {
		r.Finished = s.Now()
		r.DurationMS = r.Finished.Sub(r.Started).Milliseconds()
	}()
	fail := func(err error) { r.Status, r.Reason = StatusFailed, err.Error() }
	if _, err := s.Engine.EnsureImage(ctx, d.Image()); err != nil {
		fail(fmt.Errorf("image %s: %w", d.Image(), err))
		return
	}
	if err := s.Engine.EnsureProject(ctx, d.project); err != nil {
		fail(err)
		return
	}
	var secretEnv, secretFiles []string
	if d.service != nil {
		for _, kind := range []struct {
			refs map[string]envs.SecretRef
			into *[]string
		}{{d.service.Berth.Secrets, &secretEnv}, {d.service.Berth.SecretFiles, &secretFiles}} {
			if len(kind.refs) == 0 {
				continue
			}
			if s.Secrets == nil {
				fail(fmt.Errorf("service %s declares secrets but no secrets backend is configured", d.service.Name))
				return
			}
			vals, _, err := s.Secrets.Resolve(ctx, d.service.Name, kind.refs)
			if err != nil {
				fail(fmt.Errorf("service %s: %w", d.service.Name, err))
				return
			}
			*kind.into = vals
		}
	}
	req, err := engine.JobRequest(d.project, d.service, d.Spec, engine.JobPlacement{
		Project: d.project.Name, Env: s.Env, Revision: d.Revision, Job: r.Job, Run: r.ID, SecretEnv: secretEnv, SecretFiles: secretFiles})
	if err != nil {
		fail(err)
		return
	}
	// Create and start are not cut short by a stop: a half-made container
	// would be left behind. The wait below is where a stop is seen.
	bg := context.WithoutCancel(ctx)
	cctx, ccancel := context.WithTimeout(bg, 2*time.Minute)
	defer ccancel()
	id, err := s.Engine.Create(cctx, req)
	if err != nil {
		s.Engine.Remove(cctx, req.Name) // in case the engine made it anyway
		fail(err)
		return
	}
	r.Container = req.Name
	defer s.collect(bg, r, id, log)
	if err := s.Engine.Start(cctx, id); err != nil {
		fail(err)
		return
	}
	if err := s.Store.Save(r); err != nil {
		log.Warn("job record", "error", err)
	}
	log.Info("job run started", "trigger", r.Trigger, "image", r.Image)
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if d.Spec.Timeout > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, d.Spec.Timeout)
	}
	defer cancel()
	code, err := s.Engine.WaitExit(waitCtx, id)
	switch {
	case err == nil:
		r.ExitCode = &code
		if code == 0 {
			r.Status = StatusSucceeded
		} else {
			r.Status, r.Reason = StatusFailed, fmt.Sprintf("exit code %d", code)
		}
	case ctx.Err() != nil:
		// Replaced, or the agent is stopping: stop it gracefully.
		grace := s.StopGrace
		sctx, scancel := context.WithTimeout(bg, grace+30*time.Second)
		if err := s.Engine.Stop(sctx, id, &grace); err != nil {
			log.Warn("stop job container", "error", err)
		}
		scancel()
		cause := context.Cause(ctx)
		if errors.Is(cause, context.Canceled) {
			cause = errStopping
		}
		r.Status, r.Reason = StatusInterrupted, cause.Error()
	case waitCtx.Err() != nil:
		kctx, kcancel := context.WithTimeout(bg, 30*time.Second)
		if err := s.Engine.Kill(kctx, id); err != nil {
			log.Warn("kill job container", "error", err)
		}
		kcancel()
		r.Status, r.Reason = StatusTimeout, fmt.Sprintf("killed after the %s timeout", d.Spec.Timeout)
	default:
		fail(err)
	}
}

// collect stores a run container's output and removes the container.
func (s *Scheduler) collect(ctx context.Context, r *Run, id string, log hclog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, errb, dropped, err := s.Engine.Logs(ctx, id, s.MaxOutput)
	if err != nil {
		log.Warn("job output", "error", err)
	}
	r.StdoutDropped, r.StderrDropped = dropped[0], dropped[1]
	if err := s.Store.SaveOutput(r.Job, r.ID, out, errb); err != nil {
		log.Warn("job output", "error", err)
	}
	if err := s.Engine.Remove(ctx, id); err != nil {
		log.Warn("remove job container", "error", err)
	}
}

// record saves a finished run and trims the job's history (s.mu held).
func (s *Scheduler) record(r *Run, spec envs.JobSpec) {
	if err := s.Store.Save(r); err != nil {
		s.Log.Error("job record", "job", r.Job, "run", r.ID, "error", err)
	}
	if err := s.Store.Prune(r.Job, spec.History); err != nil {
		s.Log.Warn("job history prune", "job", r.Job, "error", err)
	}
	lvl := hclog.Info
	if r.Status == StatusFailed || r.Status == StatusTimeout {
		lvl = hclog.Warn
	}
	if r.Status != StatusSkipped {
		code := "none"
		if r.ExitCode != nil {
			code = fmt.Sprint(*r.ExitCode)
		}
		s.Log.Log(lvl, "job run finished", "job", r.Job, "run", r.ID, "status", r.Status, "exit_code", code,
			"duration", time.Duration(r.DurationMS)*time.Millisecond, "reason", r.Reason)
	}
	if s.OnFinish != nil {
		s.OnFinish(*r, spec)
	}
}

// Recover reaps what an agent killed mid-run left: every record still
// "running" becomes "interrupted" (its output kept as far as the engine has
// it) and every run container of the environment is removed. Call it once
// before Run.
func (s *Scheduler) Recover(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	cs, err := s.Engine.ListJobRuns(ctx, s.Env)
	if err != nil {
		return err
	}
	byRun := map[string]engine.JobContainer{}
	for _, c := range cs {
		byRun[c.Run] = c
	}
	names, err := s.Store.Jobs()
	if err != nil {
		return err
	}
	var errs []error
	for _, job := range names {
		runs, err := s.Store.Runs(job)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range runs {
			r := &runs[i]
			if r.Done() {
				continue
			}
			log := s.Log.With("job", r.Job, "run", r.ID)
			if c, ok := byRun[r.ID]; ok {
				s.Engine.Kill(ctx, c.ID)
				s.collect(ctx, r, c.ID, log)
				delete(byRun, r.ID)
			}
			r.Status, r.Reason, r.Finished = StatusInterrupted, "the agent stopped during the run; its container was removed on restart", s.Now()
			if !r.Started.IsZero() {
				r.DurationMS = r.Finished.Sub(r.Started).Milliseconds()
			}
			log.Warn("job run was interrupted by an agent restart")
			if err := s.Store.Save(r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, c := range byRun {
		s.Log.Warn("removing a job container without a running record", "job", c.Job, "run", c.Run)
		if err := s.Engine.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// saveListing writes the jobs listing (s.mu held).
func (s *Scheduler) saveListing() {
	l := &Listing{Revision: s.revision, Updated: s.Now().UTC()}
	for _, name := range slices.Sorted(maps.Keys(s.entries)) {
		e := s.entries[name]
		sp := e.def.Spec
		en := Entry{Name: name, Schedule: sp.Schedule, Timezone: sp.Timezone, Service: sp.Service, Image: e.def.Image(),
			Command: sp.Command, Concurrency: string(sp.Concurrency), Missed: sp.Missed, History: sp.History, Hash: e.def.Hash, Next: e.due}
		if sp.Timeout > 0 {
			en.Timeout = sp.Timeout.String()
		}
		if sp.Jitter > 0 {
			en.Jitter = sp.Jitter.String()
		}
		for id, a := range s.active {
			if a.run.Job == name {
				en.Running = append(en.Running, id)
			}
		}
		slices.Sort(en.Running)
		l.Jobs = append(l.Jobs, en)
	}
	if err := s.Store.SaveListing(l); err != nil {
		s.Log.Warn("jobs listing", "error", err)
	}
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
