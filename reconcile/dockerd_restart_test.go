package reconcile

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/lb"
	"berth.dev/berth/migrate"
)

// privateHost is a host whose engine is a private dockerd, so the test may
// restart it (the shared engine is never touched).
func privateHost(t *testing.T, liveRestore bool) (*host, *testenv.PrivateDocker) {
	pd := testenv.StartPrivateDocker(t, testenv.PrivateDockerOptions{LiveRestore: liveRestore})
	d := &testenv.DockerEnv{Client: pd.Client, RunID: "restart"}
	h := &host{t: t, d: d, name: fmt.Sprintf("trestart%v", liveRestore), reg: testenv.StartRegistry(t)}
	h.nginx, h.lbFile = testenv.StartProxy(t, "app", "127.0.0.1:1")
	h.engine = engine.New(pd.Client, nil)
	h.deployer = &Deployer{
		Images: h.engine, Containers: h.engine, Observer: h.engine,
		OneShots: &migrate.Runner{Engine: h.engine, Ledger: filepath.Join(t.TempDir(), "migrations.json"), Timeout: 30 * time.Second},
		Switcher: func(env *envs.Env) Switcher {
			return &lb.Nginx{
				Upstream: env.LB.Upstream, File: env.LB.File,
				Command: append([]string{"nginx"}, h.nginx.Args()...), PidFile: filepath.Join(h.nginx.Dir, "nginx.pid"),
				ProbeURL: h.nginx.URL() + "/",
			}
		},
		HealthTimeout: testenv.HealthTimeout, // only a restart may fail the gate here
		Settle:        time.Second,
	}
	return h, pd
}

// TestDeploy_DockerdRestartedMidDeployConverges restarts dockerd (as
// `systemctl restart docker` does) while a deploy of v2 over v1 is in each
// of its phases, with live-restore off (the engine stops every container
// on its way down) and on (they keep running). The interrupted deploy ends
// in an outage, never a verdict on v2; deploying v2 again, as the agent's
// retry does, converges to v2 whole: its server and worker, nothing of v1,
// no leftover one-shot, nginx serving v2.
func TestDeploy_DockerdRestartedMidDeployConverges(t *testing.T) {
	t.Parallel()
	for _, liveRestore := range []bool{false, true} {
		t.Run(fmt.Sprintf("live-restore=%v", liveRestore), func(t *testing.T) {
			t.Parallel() // two engines of their own
			h, pd := privateHost(t, liveRestore)
			v1 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v1"})
			v2 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v2"})
			for i, phase := range []string{"prepare", "cli", "workers", "servers", "retire"} {
				t.Run("during "+phase, func(t *testing.T) {
					from, to := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
					if _, err := h.deploy(rev{image: v1}, from); err != nil {
						t.Fatalf("deploy v1: %v", err)
					}
					if got := h.serving(); got != "version=v1" {
						t.Fatalf("v1 deployed, nginx serves %q", got)
					}
					// Restart the engine a moment into the phase, beside
					// the deploy's own calls.
					restarted := make(chan struct{})
					fired := false
					h.deployer.BeforePhase = func(p Phase, _ *Report) error {
						if string(p) == phase {
							fired = true
							go func() {
								defer close(restarted)
								time.Sleep(time.Duration(rand.Int64N(int64(500 * time.Millisecond))))
								pd.Restart()
							}()
						}
						return nil
					}
					_, err := h.deploy(rev{image: v2}, to)
					h.deployer.BeforePhase = nil
					if !fired {
						t.Fatalf("the deploy ended before %s: %v", phase, err)
					}
					<-restarted
					t.Logf("deploy with dockerd restarted during %s: %v (%s)", phase, err, failure.Of(err))
					if failure.IsVerdict(err) {
						t.Fatalf("a restart of dockerd was taken for a verdict on v2: %v", err)
					}
					// The agent's next checks: the head again, after an
					// outage until it is live, then as the re-check that
					// restores what died, until there is nothing to do.
					deadline := time.Now().Add(2 * time.Minute)
					passes := 1
					for {
						if failure.IsVerdict(err) {
							t.Fatalf("pass %d: a verdict on v2: %v", passes, err)
						}
						if time.Now().After(deadline) {
							t.Fatalf("not converged 2 min after the restart (%d passes): %v", passes, err)
						}
						time.Sleep(time.Second)
						var res *Report
						res, err = h.deploy(rev{image: v2}, to)
						passes++
						if err == nil && !res.Changed {
							break
						}
						t.Logf("pass %d: changed %v, %v", passes, err == nil && res.Changed, err)
					}
					want := []string{"web@" + to + ":running", "worker@" + to + ":running"}
					if got := h.containers(); !slices.Equal(got, want) {
						t.Fatalf("containers %v, want v2 whole %v", got, want)
					}
					// (No other engine of the machine can have taken v2's
					// port meanwhile: each publishes from a block of its
					// own, testenv's dockerd_ports.go.)
					if got := h.serving(); got != "version=v2" {
						t.Fatalf("nginx serves %q, want version=v2", got)
					}
				})
			}
		})
	}
}
