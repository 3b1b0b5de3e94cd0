package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/internal/failure"
)

var testMig = Migration{Service: "migrate", Image: "registry.example.org/journal@sha256:aa", Command: []string{"bin/console", "migrate"}, Revision: "c1"}

type migResult struct {
	host string
	out  MigrationOutcome
	err  error
}

// migrateAll has every agent reach the same migration at once.
func migrateAll(ctx context.Context, agents []*agent, m Migration, run func(host string) RunFunc) chan migResult {
	res := make(chan migResult, len(agents))
	for _, a := range agents {
		go func() {
			out, err := a.Migrate(ctx, "prod", m, run(a.Host()))
			res <- migResult{a.Host(), out, err}
		}()
	}
	return res
}

func agents(t *testing.T, eps []string, n int, opts ...agentOpt) []*agent {
	var out []*agent
	for i := range n {
		out = append(out, newAgent(t, eps, fmt.Sprintf("web-%d", i+1), opts...))
	}
	return out
}

func lockQueue(t *testing.T, r *clientv3.Client, c *Client, m Migration) int64 {
	g, err := r.Get(context.Background(), c.keys("prod").migLock(m.ID()), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return g.Count
}

func migState(t *testing.T, c *Client, m Migration) *MigrationState {
	t.Helper()
	st, _, _, err := c.readMigration(context.Background(), c.keys("prod").migState(m.ID()))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestMigrate_RunsOnceAmongThreeHostsAtOnce(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	as := agents(t, eps, 3)
	r := raw(t, eps...)
	ctx := ctxT(t, time.Minute)
	var runs atomic.Int32
	var gotToken atomic.Int64
	release := make(chan struct{})
	res := migrateAll(ctx, as, testMig, func(string) RunFunc {
		return func(ctx context.Context, token int64) error {
			runs.Add(1)
			gotToken.Store(token)
			<-release
			return nil
		}
	})
	// While it runs, the two others wait in the lock's queue (on a watch).
	waitFor(t, 10*time.Second, "one runner and two queued hosts", func() bool {
		return runs.Load() == 1 && lockQueue(t, r, as[0].Client, testMig) == 3
	})
	close(release)
	ran := 0
	for range as {
		x := <-res
		if x.err != nil {
			t.Fatalf("%s: %v", x.host, x.err)
		}
		if x.out.Ran {
			ran++
		}
	}
	if runs.Load() != 1 || ran != 1 {
		t.Fatalf("runs = %d, hosts reporting they ran it = %d; want 1 and 1", runs.Load(), ran)
	}
	st := migState(t, as[0].Client, testMig)
	if st.Status != MigrationDone || st.Token != gotToken.Load() || st.Token == 0 {
		t.Fatalf("state = %+v, want done with the fence token %d", st, gotToken.Load())
	}
	// A host that reaches it later skips it without a lock.
	out, err := newAgent(t, eps, "web-4").Migrate(ctx, "prod", testMig, func(context.Context, int64) error {
		t.Error("ran a migration that was done")
		return nil
	})
	if err != nil || out.Ran {
		t.Fatalf("late host: %+v, %v", out, err)
	}
	if n := lockQueue(t, r, as[0].Client, testMig); n != 0 {
		t.Fatalf("%d lock keys left", n)
	}
}

func TestMigrate_FailureRefusesTheRevisionEverywhere(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	ctx := ctxT(t, time.Minute)
	var runs atomic.Int32
	res := migrateAll(ctx, as, testMig, func(string) RunFunc {
		return func(ctx context.Context, token int64) error {
			runs.Add(1)
			time.Sleep(300 * time.Millisecond) // let the others queue
			return failure.AsVerdict(errors.New("exited with code 3"))
		}
	})
	for range as {
		x := <-res
		var me *MigrationError
		if !failure.IsVerdict(x.err) {
			t.Fatalf("%s: err = %v, want a verdict", x.host, x.err)
		}
		if errors.As(x.err, &me) && !strings.Contains(me.Error(), "exited with code 3") {
			t.Fatalf("%s: %v, want the runner's reason", x.host, x.err)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("runs = %d, want 1", runs.Load())
	}
	if st := migState(t, as[0].Client, testMig); st.Status != MigrationFailed {
		t.Fatalf("state = %+v", st)
	}
}

// The runner dies mid-run (its client closed without revoking, as a
// killed process leaves it): after its lease lapses every host sees the
// migration interrupted, and nobody runs it again.
func TestMigrate_RunnerDiesMidRun_InterruptedEverywhereNoSecondRun(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	ctx := ctxT(t, time.Minute)
	var runs atomic.Int32
	runner := make(chan string, 3)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	res := migrateAll(ctx, as, testMig, func(host string) RunFunc {
		return func(ctx context.Context, token int64) error {
			runs.Add(1)
			runner <- host
			<-hang
			return nil
		}
	})
	first := <-runner
	for _, a := range as {
		if a.Host() == first {
			a.crash()
		}
	}
	for range 2 {
		x := <-res
		var me *MigrationError
		if !errors.As(x.err, &me) || me.State.Status != MigrationInterrupted || me.State.Host != first || !failure.IsVerdict(x.err) {
			t.Fatalf("%s: err = %v, want the verdict: interrupted on %s", x.host, x.err, first)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("runs = %d, want 1", runs.Load())
	}
	// Later hosts refuse it too, until `berth retry`.
	late := newAgent(t, []string{etcd.Endpoint}, "web-9")
	if _, err := late.Migrate(ctx, "prod", testMig, func(context.Context, int64) error { runs.Add(1); return nil }); !failure.IsVerdict(err) {
		t.Fatalf("late host: %v, want the interrupted verdict", err)
	}
	if _, err := late.Retry(ctx, "prod", PauseInfo{By: "ops"}); err != nil {
		t.Fatal(err)
	}
	out, err := late.Migrate(ctx, "prod", testMig, func(context.Context, int64) error { runs.Add(1); return nil })
	if err != nil || !out.Ran || runs.Load() != 2 {
		t.Fatalf("after retry: %+v, %v, runs %d; want it run once more", out, err, runs.Load())
	}
}

// The same with a real process killed by SIGKILL while it holds the lock.
func TestMigrate_SIGKILLedRunnerProcess_InterruptedNoSecondRun(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	h := startHelper(t, "migrate", "web-1", eps, 2*time.Second)
	waitFor(t, 20*time.Second, "the helper to start the migration", func() bool { return len(h.marks()) == 1 })
	m := testMig
	m.Image, m.Command = "app@sha256:1", []string{"migrate"} // what the helper runs
	m.Service = "migrate"
	as := []*agent{newAgent(t, eps, "web-2"), newAgent(t, eps, "web-3")}
	ctx := ctxT(t, time.Minute)
	var runs atomic.Int32
	res := migrateAll(ctx, as, m, func(string) RunFunc {
		return func(context.Context, int64) error { runs.Add(1); return nil }
	})
	r := raw(t, eps...)
	waitFor(t, 10*time.Second, "both hosts queued behind the runner", func() bool { return lockQueue(t, r, as[0].Client, m) == 3 })
	h.signal(t, syscall.SIGKILL)
	for range as {
		x := <-res
		var me *MigrationError
		if !errors.As(x.err, &me) || me.State.Status != MigrationInterrupted || me.State.Host != "web-1" {
			t.Fatalf("%s: %v, want interrupted on web-1", x.host, x.err)
		}
	}
	if runs.Load() != 0 || len(h.marks()) != 1 {
		t.Fatalf("second run: in-process runs %d, helper runs %d", runs.Load(), len(h.marks()))
	}
}

// An idempotent migration whose runner died is taken over, with a new,
// larger fence token.
func TestMigrate_IdempotentTakenOverAfterRunnerDies(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	ctx := ctxT(t, time.Minute)
	m := testMig
	m.Idempotent = true
	var mu sync.Mutex
	var tokens []int64
	runner := make(chan string, 3)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	res := migrateAll(ctx, as, m, func(host string) RunFunc {
		return func(ctx context.Context, token int64) error {
			mu.Lock()
			tokens = append(tokens, token)
			n := len(tokens)
			mu.Unlock()
			if n == 1 {
				runner <- host
				<-hang
			}
			return nil
		}
	})
	first := <-runner
	var alive *agent
	for _, a := range as {
		if a.Host() == first {
			a.crash()
		} else {
			alive = a
		}
	}
	ran := 0
	for range 2 {
		x := <-res
		if x.err != nil {
			t.Fatalf("%s: %v", x.host, x.err)
		}
		if x.out.Ran {
			ran++
			if !strings.Contains(x.out.State.Note, "took over from "+first) {
				t.Errorf("note = %q", x.out.State.Note)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if ran != 1 || len(tokens) != 2 || tokens[1] <= tokens[0] {
		t.Fatalf("ran = %d, tokens = %v; want one takeover with a larger token", ran, tokens)
	}
	if st := migState(t, alive.Client, m); st.Status != MigrationDone || st.Token != tokens[1] {
		t.Fatalf("state = %+v", st)
	}
}

// A runner that lost its lease mid-run (a paused process) finishes later:
// its result replaces the interrupted mark, since nobody else ran it.
func TestMigrate_LateResultAfterLeaseLossReplacesInterrupted(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 2)
	ctx := ctxT(t, time.Minute)
	interrupted := make(chan struct{})
	var runs atomic.Int32
	runnerDone := make(chan migResult, 1)
	go func() {
		out, err := as[0].Migrate(ctx, "prod", testMig, func(ctx context.Context, token int64) error {
			runs.Add(1)
			s, _ := as[0].Session(ctx)
			if _, err := raw(t, as[0].cfg.Etcd.Endpoints...).Revoke(ctx, s.Lease()); err != nil { // the lease ends
				t.Error(err)
			}
			<-interrupted
			return nil
		})
		runnerDone <- migResult{"web-1", out, err}
	}()
	waitFor(t, 10*time.Second, "web-1 running", func() bool { return runs.Load() == 1 })
	_, err := as[1].Migrate(ctx, "prod", testMig, func(context.Context, int64) error { runs.Add(1); return nil })
	var me *MigrationError
	if !errors.As(err, &me) || me.State.Status != MigrationInterrupted {
		t.Fatalf("web-2: %v, want interrupted", err)
	}
	close(interrupted)
	x := <-runnerDone
	if x.err != nil || !x.out.Ran {
		t.Fatalf("runner: %+v, %v", x.out, x.err)
	}
	st := migState(t, as[0].Client, testMig)
	if st.Status != MigrationDone || st.Host != "web-1" || !strings.Contains(st.Note, "lost its lease") || runs.Load() != 1 {
		t.Fatalf("state = %+v, runs %d", st, runs.Load())
	}
}

func TestMigrate_NotStartedIsForgotten(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	ctx := ctxT(t, time.Minute)
	_, err := a.Migrate(ctx, "prod", testMig, func(context.Context, int64) error {
		return failure.AsOutage(fmt.Errorf("pull image: %w", ErrNotStarted))
	})
	if !failure.IsOutage(err) {
		t.Fatalf("err = %v, want the outage back", err)
	}
	if st := migState(t, a.Client, testMig); st != nil {
		t.Fatalf("state = %+v, want none", st)
	}
	out, err := a.Migrate(ctx, "prod", testMig, func(context.Context, int64) error { return nil })
	if err != nil || !out.Ran {
		t.Fatalf("second attempt: %+v, %v", out, err)
	}
}
