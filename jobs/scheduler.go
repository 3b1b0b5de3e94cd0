package jobs

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// Scheduler runs the live revision's jobs on their schedules.
type Scheduler struct {
	Env   string
	Store *Store
	// Runner runs the runs; Reaper clears what a killed agent left
	// (Recover). *engine.Engine is both.
	Runner  Runner
	Reaper  Reaper
	Secrets Secrets // nil: a job whose service has secrets fails
	// Signatures, when set, checks a run's image before it is pulled or
	// run (a digest verified once is not looked up again).
	Signatures Signatures
	Log        hclog.Logger
	// MaxOutput is the tail of stdout and of stderr kept per run
	// (default 1 MiB each).
	MaxOutput int
	// StopGrace is how long a replaced or interrupted run gets between
	// its stop signal and SIGKILL (default 10 s).
	StopGrace time.Duration
	// OnFinish, when set, is told of every run that ended (metrics,
	// notifications). It must not block.
	OnFinish func(r Run, spec envs.JobSpec)
	// Fleet, when set, coordinates the env's jobs with its other hosts
	// (fleet.go): a `run_on: one` job (the default) runs each scheduled
	// time on one host of the fleet, `run_on: all` on every host. nil:
	// every job runs here, run_on ignored, as on a single host.
	Fleet Fleet

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
	// fleetMissed: the missed policy is still to be decided fleet-wide
	// (tick starts it once Run runs).
	fleetMissed bool
	// waiting is the latest scheduled time waiting for its fleet claim:
	// an older one still waiting gives up (only the latest runs).
	waiting time.Time
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
		s.forgetRemoved(want)
	}
	return err
}

// schedule sets e's next time from now.
func (s *Scheduler) schedule(e *entry, now time.Time) {
	e.next = s.nextTime(e.def, now)
	e.due = e.next.Add(s.Jitter(e.def.Spec.Jitter))
}

// once says whether each scheduled time of d runs on one host of the
// fleet.
func (s *Scheduler) once(d *Def) bool {
	return s.Fleet != nil && d.Spec.RunOn != envs.RunOnAll
}

// nextTime is d's first scheduled time after after. A fleet job's @every
// times are aligned, so that every host names the same times.
func (s *Scheduler) nextTime(d *Def, after time.Time) time.Time {
	if s.once(d) {
		return d.Schedule.NextAligned(after)
	}
	return d.Schedule.Next(after)
}

// missed applies the job's missed policy to the times it was due while the
// agent was not running: since its last scheduled run on record. At most
// one catch-up run, however many were missed.
func (s *Scheduler) missed(e *entry, now time.Time) {
	if s.once(e.def) {
		e.fleetMissed = true // decided fleet-wide, by tick
		return
	}
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

// Run reaps interrupted runs (Recover), then schedules until ctx ends; then
// runs in flight are stopped and recorded as interrupted before it returns.
func (s *Scheduler) Run(ctx context.Context) {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	// First reap what a killed agent left. Without the engine nothing can
	// run anyway: while it does not answer, retry, so no record stays
	// "running". Other errors (a container the engine refuses to kill) are
	// logged, and the next start tries again; they must not stop every job.
	for err := s.Recover(ctx); err != nil; err = s.Recover(ctx) {
		if !failure.IsOutage(err) {
			s.Log.Error("jobs: some interrupted runs could not be reaped; the next start tries again", "error", err)
			break
		}
		s.Log.Warn("jobs: cannot reap interrupted runs yet; retrying in 10 s", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
	s.mu.Lock()
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
		if e.fleetMissed {
			e.fleetMissed = false
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.fleetMissed(e, e.def) }()
		}
		if e.catchUp != nil {
			s.start(e.def, *e.catchUp, TriggerMissed, "")
			e.catchUp, changed = nil, true
		}
		if e.next.IsZero() {
			continue
		}
		if !now.Before(e.due) {
			if s.once(e.def) {
				s.claimAndStart(e, e.next, TriggerSchedule, "")
			} else {
				s.start(e.def, e.next, TriggerSchedule, "")
			}
			e.next = s.nextTime(e.def, e.next)
			if !e.next.IsZero() && !e.next.After(now) {
				// Fell behind (a suspended host, a clock step): resume
				// from now rather than replaying every missed time.
				n, _ := e.def.Schedule.Missed(e.next.Add(-time.Nanosecond), now, 1000)
				s.Log.Warn("job fell behind its schedule; missed runs skipped", "job", name, "missed", n)
				e.next = s.nextTime(e.def, now)
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

// saveListing writes the jobs listing (s.mu held).
func (s *Scheduler) saveListing() {
	l := &Listing{Revision: s.revision, Updated: s.Now().UTC()}
	for _, name := range slices.Sorted(maps.Keys(s.entries)) {
		e := s.entries[name]
		sp := e.def.Spec
		en := Entry{Name: name, Schedule: sp.Schedule, Timezone: sp.Timezone, Service: sp.Service, Image: e.def.Image(),
			Command: sp.Command, Concurrency: string(sp.Concurrency), Missed: sp.Missed, History: sp.History, Hash: e.def.Hash, Next: e.due}
		if s.Fleet != nil {
			en.RunOn = envs.RunOnOne
			if sp.RunOn == envs.RunOnAll {
				en.RunOn = envs.RunOnAll
			}
		}
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
