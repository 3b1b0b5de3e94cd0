package reconcile

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/migrate"
)

// timed wraps the engine and the balancer and records when each call ran,
// so a benchmark can tell berth's own work from Docker's and nginx's.
type timed struct {
	*engine.Engine
	mu                 sync.Mutex
	docker, health, lb time.Duration
	spans              []span // every call, for the union
}

type span struct{ from, to time.Time }

func (t *timed) add(d *time.Duration, start time.Time) {
	t.mu.Lock()
	*d += time.Since(start)
	t.spans = append(t.spans, span{start, time.Now()})
	t.mu.Unlock()
}

// covered is how much of the wall time some timed call was running:
// concurrent calls (retire stops in parallel) count once.
func (t *timed) covered() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	slices.SortFunc(t.spans, func(a, b span) int { return a.from.Compare(b.from) })
	var total time.Duration
	var cur span
	for i, s := range t.spans {
		switch {
		case i == 0:
			cur = s
		case s.from.After(cur.to):
			total += cur.to.Sub(cur.from)
			cur = s
		case s.to.After(cur.to):
			cur.to = s.to
		}
	}
	if len(t.spans) > 0 {
		total += cur.to.Sub(cur.from)
	}
	return total
}

func (t *timed) Create(ctx context.Context, r *engine.Request) (string, error) {
	defer t.add(&t.docker, time.Now())
	return t.Engine.Create(ctx, r)
}
func (t *timed) Start(ctx context.Context, id string) error {
	defer t.add(&t.docker, time.Now())
	return t.Engine.Start(ctx, id)
}
func (t *timed) Stop(ctx context.Context, id string, g *time.Duration) error {
	defer t.add(&t.docker, time.Now())
	return t.Engine.Stop(ctx, id, g)
}
func (t *timed) Remove(ctx context.Context, id string) error {
	defer t.add(&t.docker, time.Now())
	return t.Engine.Remove(ctx, id)
}
func (t *timed) WaitHealthy(ctx context.Context, id string, timeout, settle time.Duration) error {
	defer t.add(&t.health, time.Now())
	return t.Engine.WaitHealthy(ctx, id, timeout, settle)
}
func (t *timed) RunOnce(ctx context.Context, r *engine.Request, o engine.OneShot) (*engine.RunResult, error) {
	defer t.add(&t.docker, time.Now())
	return t.Engine.RunOnce(ctx, r, o)
}

type timedSwitch struct {
	t  *timed
	sw Switcher
}

func (s timedSwitch) Switch(ctx context.Context, b []string) error {
	defer s.t.add(&s.t.lb, time.Now())
	return s.sw.Switch(ctx, b)
}

// BenchmarkDeployImagesPresent is one deploy of a new revision whose images
// are already pulled (migration, worker, server behind nginx), without load.
// It reports the time spent in Docker calls (create, start, stop, remove,
// one-shot runs), health waits and the nginx switch (reload and drain), and
// berth's own overhead: the wall time during which none of those ran.
func BenchmarkDeployImagesPresent(b *testing.B) {
	h := newHost(b)
	imgs := []testenv.AppImage{testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v1"}), testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v2"})}
	for _, img := range imgs {
		h.d.CleanupImage(img.Ref())
		if _, err := h.engine.EnsureImage(b.Context(), img.Ref()); err != nil {
			b.Fatal(err)
		}
	}
	tm := &timed{Engine: h.engine}
	switcher := h.deployer.Switcher
	d := &Deployer{
		Images: h.engine, Containers: tm, Observer: tm,
		OneShots:      &migrate.Runner{Engine: tm, Ledger: filepath.Join(b.TempDir(), "m.json")},
		Switcher:      func(env *envs.Env) Switcher { return timedSwitch{tm, switcher(env)} },
		HealthTimeout: 30 * time.Second, Settle: time.Second,
	}
	if _, err := d.Deploy(b.Context(), Input{Env: h.env(rev{image: imgs[0]}), Revision: "r0"}); err != nil {
		b.Fatal(err)
	}
	var total, docker, health, lb, covered time.Duration
	i := 0
	for b.Loop() {
		i++
		b.StopTimer()
		env := h.env(rev{image: imgs[i%2]})
		tm.docker, tm.health, tm.lb, tm.spans = 0, 0, 0, nil
		b.StartTimer()
		start := time.Now()
		if _, err := d.Deploy(b.Context(), Input{Env: env, Revision: fmt.Sprintf("r%d", i)}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		docker, health, lb, covered = docker+tm.docker, health+tm.health, lb+tm.lb, covered+tm.covered()
	}
	n := float64(b.N)
	b.ReportMetric(total.Seconds()/n, "s-total/op")
	b.ReportMetric(docker.Seconds()/n, "s-docker/op")
	b.ReportMetric(health.Seconds()/n, "s-health/op")
	b.ReportMetric(lb.Seconds()/n, "s-nginx/op")
	b.ReportMetric((total-covered).Seconds()/n, "s-berth/op")
}
