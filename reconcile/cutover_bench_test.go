package reconcile

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/lb"
	"berth.dev/berth/migrate"
)

// traced wraps the engine and records, per service, when its new
// containers passed their health gate and when its old ones were removed:
// the "new server healthy → old server retired" span of a cutover, and
// the time each Docker call and health wait took.
type traced struct {
	*engine.Engine
	mu      sync.Mutex
	service map[string]string // container id → service
	created map[string]bool   // ids created in this deploy
	healthy map[string]time.Time
	stopped map[string]time.Time // the old containers' stop begins: out of the balancer
	retired map[string]time.Time
	docker  time.Duration
	health  time.Duration
	spans   []span
}

func newTraced(e *engine.Engine) *traced {
	return &traced{Engine: e, service: map[string]string{}, created: map[string]bool{}, healthy: map[string]time.Time{}, stopped: map[string]time.Time{}, retired: map[string]time.Time{}}
}

func (t *traced) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.created, t.healthy, t.stopped, t.retired = map[string]bool{}, map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	t.docker, t.health, t.spans = 0, 0, nil
}

func (t *traced) note(d *time.Duration, start time.Time) {
	t.mu.Lock()
	*d += time.Since(start)
	t.spans = append(t.spans, span{start, time.Now()})
	t.mu.Unlock()
}

func (t *traced) Create(ctx context.Context, r *engine.Request) (string, error) {
	defer t.note(&t.docker, time.Now())
	id, err := t.Engine.Create(ctx, r)
	t.mu.Lock()
	t.service[id], t.created[id] = r.Config.Labels[engine.LabelService], true
	t.mu.Unlock()
	return id, err
}
func (t *traced) Start(ctx context.Context, id string) error {
	defer t.note(&t.docker, time.Now())
	return t.Engine.Start(ctx, id)
}
func (t *traced) Stop(ctx context.Context, id string, g *time.Duration) error {
	defer t.note(&t.docker, time.Now())
	t.mu.Lock()
	if svc := t.service[id]; !t.created[id] && t.stopped[svc].IsZero() {
		t.stopped[svc] = time.Now()
	}
	t.mu.Unlock()
	return t.Engine.Stop(ctx, id, g)
}
func (t *traced) Remove(ctx context.Context, id string) error {
	defer t.note(&t.docker, time.Now())
	err := t.Engine.Remove(ctx, id)
	t.mu.Lock()
	if !t.created[id] {
		if svc := t.service[id]; t.retired[svc].Before(time.Now()) {
			t.retired[svc] = time.Now()
		}
	}
	t.mu.Unlock()
	return err
}
func (t *traced) WaitHealthy(ctx context.Context, id string, timeout, settle time.Duration) error {
	defer t.note(&t.health, time.Now())
	err := t.Engine.WaitHealthy(ctx, id, timeout, settle)
	t.mu.Lock()
	if svc := t.service[id]; t.healthy[svc].Before(time.Now()) {
		t.healthy[svc] = time.Now()
	}
	t.mu.Unlock()
	return err
}
func (t *traced) List(ctx context.Context, env string) ([]engine.Managed, error) {
	ms, err := t.Engine.List(ctx, env)
	t.mu.Lock()
	for _, m := range ms {
		t.service[m.ID] = m.Service
	}
	t.mu.Unlock()
	return ms, err
}
func (t *traced) RunOnce(ctx context.Context, r *engine.Request, o engine.OneShot) (*engine.RunResult, error) {
	defer t.note(&t.docker, time.Now())
	return t.Engine.RunOnce(ctx, r, o)
}

// covered is how much of the wall time some traced call ran (concurrent
// calls count once).
func (t *traced) covered(lbSpans []span) time.Duration {
	t.mu.Lock()
	all := append(append([]span(nil), t.spans...), lbSpans...)
	t.mu.Unlock()
	tm := &timed{spans: all}
	return tm.covered()
}

// benchSwitch times a balancer's calls and keeps its Standby and Answers.
type benchSwitch struct {
	sw    Switcher
	mu    *sync.Mutex
	spans *[]span
}

func (b benchSwitch) time(start time.Time) {
	b.mu.Lock()
	*b.spans = append(*b.spans, span{start, time.Now()})
	b.mu.Unlock()
}

func (b benchSwitch) Switch(ctx context.Context, be []string) error {
	defer b.time(time.Now())
	return b.sw.Switch(ctx, be)
}
func (b benchSwitch) SwitchStandby(ctx context.Context, be []string) error {
	defer b.time(time.Now())
	if sb, ok := b.sw.(Standby); ok {
		return sb.SwitchStandby(ctx, be)
	}
	return b.sw.Switch(ctx, be)
}
func (b benchSwitch) Retire(ctx context.Context) error {
	defer b.time(time.Now())
	if sb, ok := b.sw.(Standby); ok {
		return sb.Retire(ctx)
	}
	return nil
}

// BenchmarkCutoverUnderLoad measures a cutover of a server (with a
// migration and a worker) under constant load: berth through nginx, berth
// through HAProxy, and docker-compose up -d behind nginx, in the same run.
// 8 keep-alive Go clients send GETs from 1 s before to 1 s after each
// change, and wrk (8 connections) beside them; a transport error
// (connection refused, reset, EOF) or a non-200 answer counts as failed,
// and wrk's socket errors are reported apart (Go's client resends a GET
// whose reused connection closed before an answer; wrk does not). For berth it reports each phase's time, the time from
// the new server passing its health gate to the old one retired, and
// berth's own time (the wall time in which no Docker call, health wait or
// balancer call ran).
//
//	scripts/bench   (or: go test -run '^$' -bench CutoverUnderLoad -benchtime 5x ./reconcile)
func BenchmarkCutoverUnderLoad(b *testing.B) {
	for _, lbType := range []string{"nginx", "haproxy"} {
		b.Run("berth-"+lbType, func(b *testing.B) { benchBerthCutover(b, lbType) })
	}
	b.Run("docker-compose", benchComposeCutover)
}

func benchBerthCutover(b *testing.B, lbType string) {
	h := newHost(b)
	var hp *testenv.HAProxy
	url := h.nginx.URL() + "/"
	if lbType == "haproxy" {
		hp = testenv.StartHAProxy(b, "app")
		url = hp.URL() + "/"
	}
	tr := newTraced(h.engine)
	var lbMu sync.Mutex
	var lbSpans []span
	d := &Deployer{
		Images: h.engine, Containers: tr, Observer: tr,
		OneShots: &migrate.Runner{Engine: tr, Ledger: filepath.Join(b.TempDir(), "m.json"), Timeout: 30 * time.Second},
		Switcher: func(env *envs.Env) Switcher {
			var sw Switcher
			if hp != nil {
				sw = &lb.HAProxy{Backend: "app", Env: env.Name, RuntimeAPI: hp.RuntimeAPI(), ServersDir: hp.ServersDir,
					Command: append([]string{"haproxy"}, hp.Args()...), DrainTimeout: 30 * time.Second}
			} else {
				sw = h.deployer.Switcher(env)
			}
			return benchSwitch{sw, &lbMu, &lbSpans}
		},
		HealthTimeout: 30 * time.Second, Settle: time.Second,
	}
	if testing.Verbose() {
		d.Log = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info})
	}
	imgs := []testenv.AppImage{testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v1"}), testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v2"})}
	for _, img := range imgs {
		if _, err := h.engine.EnsureImage(b.Context(), img.Ref()); err != nil {
			b.Fatal(err)
		}
	}
	env := func(img testenv.AppImage) *envs.Env {
		e := h.env(rev{image: img})
		if hp != nil {
			for i := range e.Services {
				if e.Services[i].Berth.Role == envs.RoleServer {
					e.Services[i].Berth.LB = &envs.LBSpec{Type: "haproxy", Backend: "app"}
				}
			}
		}
		return e
	}
	if _, err := d.Deploy(b.Context(), Input{Env: env(imgs[0]), Revision: "r0"}); err != nil {
		b.Fatal(err)
	}
	var sent, failed, connErrs int64
	var ws testenv.WrkStats
	var cutover, healthyToRetired, healthyToStop, own time.Duration
	phases := map[string]time.Duration{}
	i := 0
	for b.Loop() {
		i++
		e := env(imgs[i%2])
		tr.reset()
		lbMu.Lock()
		lbSpans = nil
		lbMu.Unlock()
		l, wl := testenv.StartLoad(b, url, 8), testenv.StartWrk(b, url)
		time.Sleep(time.Second)
		start := time.Now()
		res, err := d.Deploy(b.Context(), Input{Env: e, Revision: fmt.Sprintf("r%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		cutover += took
		lbMu.Lock()
		own += took - tr.covered(lbSpans)
		lbMu.Unlock()
		for _, p := range res.Phases {
			phases[string(p.Name)] += p.Duration
		}
		healthyToRetired += tr.retired["web"].Sub(tr.healthy["web"])
		healthyToStop += tr.stopped["web"].Sub(tr.healthy["web"])
		b.Logf("cutover %d: %s, phases %v, web healthy → old web out of the balancer (its stop begins) %s → removed %s", i, took.Round(time.Millisecond), res.Phases,
			tr.stopped["web"].Sub(tr.healthy["web"]).Round(time.Millisecond), tr.retired["web"].Sub(tr.healthy["web"]).Round(time.Millisecond))
		time.Sleep(time.Second)
		ls := l.Stop()
		s, f := ls.Sent, ls.Failed
		sent, failed, connErrs = sent+s, failed+f, connErrs+ls.ConnErrs
		w := wl.Stop(b)
		ws = ws.Add(w)
		b.Logf("cutover %d: Go clients %d requests, %d failed; wrk %+v", i, s, f, w)
	}
	report(b, sent, failed, cutover)
	reportWrk(b, ws)
	n := float64(b.N)
	b.ReportMetric(float64(connErrs)/n, "connerr/op")
	b.ReportMetric(healthyToRetired.Seconds()/n, "s-healthy-to-retired/op")
	b.ReportMetric(healthyToStop.Seconds()/n, "s-healthy-to-stop/op")
	b.ReportMetric(own.Seconds()/n, "s-berth/op")
	for name, d := range phases {
		b.ReportMetric(d.Seconds()/n, "s-"+name+"/op")
	}
}

func benchComposeCutover(b *testing.B) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if testenv.Integration() {
			b.Fatal("docker-compose not installed (scripts/bench installs it)")
		}
		b.Skip("docker-compose not installed (apt-get install docker-compose)")
	}
	h := newHost(b)
	imgs := []testenv.AppImage{testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v1"}), testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v2"})}
	port := testenv.FreePort(b)
	dir := b.TempDir()
	up := func(img testenv.AppImage) {
		compose := fmt.Sprintf("version: '3.7'\nservices:\n  web:\n    image: %s\n    ports: ['127.0.0.1:%d:8080']\n    labels: {%s: %s}\n", img.Ref(), port, testenv.TestLabel, h.d.RunID)
		os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(compose), 0o644)
		cmd := exec.Command("docker-compose", "-p", h.name, "up", "-d", "--remove-orphans")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("docker-compose up: %v\n%s", err, out)
		}
	}
	for _, img := range imgs {
		if _, err := h.engine.EnsureImage(b.Context(), img.Ref()); err != nil {
			b.Fatal(err)
		}
	}
	up(imgs[0])
	os.WriteFile(h.lbFile, []byte(fmt.Sprintf("upstream app { server 127.0.0.1:%d; }\n", port)), 0o644)
	h.nginx.Reload(b)
	waitServing(b, h.nginx.URL()+"/")
	var sent, failed, connErrs int64
	var ws testenv.WrkStats
	var cutover time.Duration
	i := 0
	for b.Loop() {
		i++
		l, wl := testenv.StartLoad(b, h.nginx.URL()+"/", 8), testenv.StartWrk(b, h.nginx.URL()+"/")
		time.Sleep(time.Second)
		start := time.Now()
		up(imgs[i%2])
		cutover += time.Since(start)
		waitServing(b, h.nginx.URL()+"/")
		time.Sleep(time.Second)
		ls := l.Stop()
		sent, failed, connErrs = sent+ls.Sent, failed+ls.Failed, connErrs+ls.ConnErrs
		ws = ws.Add(wl.Stop(b))
	}
	report(b, sent, failed, cutover)
	reportWrk(b, ws)
	b.ReportMetric(float64(connErrs)/float64(b.N), "connerr/op")
}
