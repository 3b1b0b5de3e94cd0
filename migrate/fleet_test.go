package migrate

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// slowEngine runs every one-shot for a while (so the hosts overlap) and
// records each run's host and environment.
type slowEngine struct {
	mu   sync.Mutex
	host string
	runs *[]string
	exit int
}

func (e *slowEngine) RunOnce(ctx context.Context, req *engine.Request, o engine.OneShot) (*engine.RunResult, error) {
	if o.Started != nil {
		o.Started("c-" + e.host)
	}
	e.mu.Lock()
	*e.runs = append(*e.runs, e.host+" "+strings.Join(req.Config.Env, " "))
	e.mu.Unlock()
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		return &engine.RunResult{Stopped: ctx.Err(), ExitCode: -1}, nil
	}
	return &engine.RunResult{ExitCode: e.exit}, nil
}

func fleetRunner(t *testing.T, eps []string, host string, eng OneShot) *Runner {
	t.Helper()
	c, err := fleet.New(fleet.Config{Etcd: fleet.EtcdConfig{Endpoints: eps}, Host: host, LeaseTTL: 5 * time.Second}, fleet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Runner{Engine: eng, Fleet: c, Env: "prod", Timeout: time.Minute}
}

func fleetJob(image string) Job {
	j := job("migrate", envs.RoleMigrate, image)
	j.Request.Config = &container.Config{Env: []string{"A=1"}, Labels: map[string]string{engine.LabelRevision: "rev1"}}
	return j
}

func TestRunner_FleetRunsAMigrationOnceAndTheOthersSkipIt(t *testing.T) {
	eps := []string{testenv.StartEtcd(t).ClientURL}
	var mu sync.Mutex
	var runs []string
	var wg sync.WaitGroup
	recs := make([]Record, 3)
	errs := make([]error, 3)
	for i, h := range []string{"a", "b", "c"} {
		r := fleetRunner(t, eps, h, &slowEngine{host: h, runs: &runs})
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := r.Run(t.Context(), []Job{fleetJob("r@1")})
			mu.Lock()
			defer mu.Unlock()
			errs[i] = err
			if len(rs) == 1 {
				recs[i] = rs[0]
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
	}
	if len(runs) != 1 || !strings.Contains(runs[0], "A=1 "+FenceTokenEnv+"=") {
		t.Fatalf("runs %q: want exactly one, with %s", runs, FenceTokenEnv)
	}
	ran := strings.Fields(runs[0])[0]
	skipped := 0
	for _, r := range recs {
		if r.Skipped != "" {
			skipped++
			if !strings.HasPrefix(r.Skipped, "ran on host "+ran) {
				t.Errorf("skipped record %q does not name the host that ran it (%s)", r.Skipped, ran)
			}
		}
	}
	if skipped != 2 {
		t.Fatalf("records %+v: want two skipped", recs)
	}
}

func TestRunner_FleetMigrationFailedOnOneHostIsRefusedByTheOthersWithoutRunning(t *testing.T) {
	eps := []string{testenv.StartEtcd(t).ClientURL}
	var runs []string
	a := fleetRunner(t, eps, "a", &slowEngine{host: "a", runs: &runs, exit: 3})
	_, err := a.Run(t.Context(), []Job{fleetJob("r@2")})
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "exited with code 3") {
		t.Fatalf("the runner's failure: %v (%s)", err, failure.Of(err))
	}
	b := fleetRunner(t, eps, "b", &slowEngine{host: "b", runs: &runs})
	recs, err := b.Run(t.Context(), []Job{fleetJob("r@2")})
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "failed on host a") {
		t.Fatalf("another host: %v (%s)", err, failure.Of(err))
	}
	if len(runs) != 1 || !strings.HasPrefix(runs[0], "a ") {
		t.Fatalf("runs %q: only a's", runs)
	}
	if len(recs) != 1 || !strings.HasPrefix(recs[0].Skipped, "not run: ") {
		t.Fatalf("record %+v", recs)
	}
	// A new image is a new migration: it runs.
	if _, err := b.Run(t.Context(), []Job{fleetJob("r@3")}); err != nil || len(runs) != 2 || !slices.ContainsFunc(runs, func(s string) bool { return strings.HasPrefix(s, "b ") }) {
		t.Fatalf("new image: %v, runs %q", err, runs)
	}
}

// unreachableFleet is etcd down: nothing runs.
type unreachableFleet struct{}

func (unreachableFleet) Migrate(context.Context, string, fleet.Migration, fleet.RunFunc) (fleet.MigrationOutcome, error) {
	return fleet.MigrationOutcome{}, failure.AsOutage(errors.New("etcd unreachable"))
}

// A migration that never started (etcd down) is recorded as not run, so
// the journal does not read it as a run with exit 0.
func TestRunner_FleetMigrationNotStartedIsNotRecordedAsARun(t *testing.T) {
	var runs []string
	r := &Runner{Engine: &slowEngine{host: "a", runs: &runs}, Fleet: unreachableFleet{}, Env: "prod"}
	recs, err := r.Run(t.Context(), []Job{fleetJob("r@1")})
	if !failure.IsOutage(err) || !strings.Contains(err.Error(), "waiting for etcd") {
		t.Fatalf("err %v (%s)", err, failure.Of(err))
	}
	if len(runs) != 0 || len(recs) != 1 || !strings.HasPrefix(recs[0].Skipped, "not started") {
		t.Fatalf("runs %q, records %+v", runs, recs)
	}
}
