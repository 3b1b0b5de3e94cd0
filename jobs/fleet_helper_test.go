package jobs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/fleet/fleetjobs"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/jobs"
)

// Three job schedulers of one env, each with its own fleet client (its
// own etcd session), state dir and Compose project, on one real etcd and
// the real engine: what three agents of a fleet run.

// fleetEnv is the env's name in the fleet. Each host's scheduler has its
// own env name on the engine (its run containers' label), because the
// three share one engine here and a scheduler reaps its env's containers
// on start; sharedEnv maps all three onto the one fleet env.
const fleetEnv = "shop"

type sharedEnv struct{ jobs.Fleet }

func (f sharedEnv) Claim(ctx context.Context, _, job string, t time.Time, p jobs.FleetPolicy) (jobs.Claim, error) {
	return f.Fleet.Claim(ctx, fleetEnv, job, t, p)
}

func (f sharedEnv) LastScheduled(ctx context.Context, _, job string) (time.Time, error) {
	return f.Fleet.LastScheduled(ctx, fleetEnv, job)
}

func (f sharedEnv) Active(ctx context.Context, _, job string) ([]jobs.FleetActive, error) {
	return f.Fleet.Active(ctx, fleetEnv, job)
}

type fleetHost struct {
	name   string
	s      *jobs.Scheduler
	c      *fleet.Client
	f      jobs.Fleet
	cancel context.CancelFunc
	done   chan struct{}
}

func (h *fleetHost) stop() {
	h.cancel()
	<-h.done
}

// fleetHosts starts n schedulers of an env with the given x-berth.jobs
// block (around a worker running the test image) on etcd.
func fleetHosts(t *testing.T, etcd *testenv.Etcd, n int, jobsYAML string) []*fleetHost {
	t.Helper()
	d := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "fleetjobs-" + d.RunID})
	d.CleanupImage(img.Ref())
	// The three engines share the client: negotiate its API version
	// before they do, at once (the lazy negotiation is not safe for
	// concurrent first calls).
	d.Client.NegotiateAPIVersion(t.Context())
	dir := t.TempDir()
	var hs []*fleetHost
	for i := range n {
		host := fmt.Sprintf("web-%d", i+1)
		name := fmt.Sprintf("f%s%d", d.RunID, i+1)
		d.CleanupLabel(t, engine.LabelJobEnv, name)
		d.CleanupLabel(t, "com.docker.compose.project", name)
		os.MkdirAll(filepath.Join(dir, "envs", name), 0o755)
		compose := fmt.Sprintf(`
services:
  web:
    image: %s
    environment: {APP_MODE: exit, APP_PRINT_ENV: BERTH_FENCE_TOKEN}
    x-berth: {role: worker}
x-berth:
  jobs:
%s`, img.Ref(), jobsYAML)
		if err := os.WriteFile(filepath.Join(dir, "envs", name, "compose.yaml"), []byte(compose), 0o644); err != nil {
			t.Fatal(err)
		}
		env, err := envs.Load(t.Context(), dir, name, envs.Options{Policy: envs.Policy{MinJobInterval: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		log := hclog.New(&hclog.LoggerOptions{Name: host, Output: testWriter{t}, Level: hclog.Info})
		c, err := fleet.New(fleet.Config{Etcd: fleet.EtcdConfig{Endpoints: []string{etcd.ClientURL}}, Host: host, LeaseTTL: 4 * time.Second},
			fleet.Options{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go c.Run(ctx)
		h := &fleetHost{name: host, c: c, f: sharedEnv{fleetjobs.Adapter{C: c}}, cancel: cancel, done: make(chan struct{})}
		eng := engine.New(d.Client, nil)
		h.s = &jobs.Scheduler{Env: name, Store: &jobs.Store{Dir: t.TempDir()}, Runner: eng, Reaper: eng,
			StopGrace: time.Second, Log: log, Fleet: h.f}
		if err := h.s.Update(env, "rev1"); err != nil {
			t.Fatal(err)
		}
		go func() { defer close(h.done); h.s.Run(ctx) }()
		t.Cleanup(func() { h.stop(); c.Close() })
		hs = append(hs, h)
	}
	return hs
}

// testWriter logs to the test until it ends.
type testWriter struct{ t *testing.T }

var logMu sync.Mutex

func (w testWriter) Write(b []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	defer func() { recover() }() // a line after the test ended
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func waitFleet(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func history(t *testing.T, h *fleetHost, job string) []fleet.JobRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := h.c.JobRuns(ctx, fleetEnv, job, 0)
	if err != nil {
		t.Fatalf("%s: history: %v", h.name, err)
	}
	return recs
}

// localRuns is every host's own runs of job that did run (not skipped),
// by scheduled time.
func localRuns(t *testing.T, hs []*fleetHost, job string) map[time.Time][]jobs.Run {
	t.Helper()
	out := map[time.Time][]jobs.Run{}
	for _, h := range hs {
		rs, err := h.s.Store.Runs(job)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Status != jobs.StatusSkipped && r.Trigger != jobs.TriggerManual {
				out[r.Scheduled.UTC()] = append(out[r.Scheduled.UTC()], r)
			}
		}
	}
	return out
}

func doneCount(recs []fleet.JobRecord) int {
	n := 0
	for _, r := range recs {
		if r.Status != fleet.JobRunning {
			n++
		}
	}
	return n
}
