package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// TestEngine_HungDockerdCallsAreOutagesWithinTheirDeadlines freezes a
// private dockerd (SIGSTOP) with a container running and calls every
// engine method: each must come back as an outage within its own
// deadline, not hang. After SIGCONT the same Engine works again.
func TestEngine_HungDockerdCallsAreOutagesWithinTheirDeadlines(t *testing.T) {
	t.Parallel()
	pd := testenv.StartPrivateDocker(t, testenv.PrivateDockerOptions{})
	reg := testenv.StartRegistry(t)
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "hung"})
	// The setup runs with the default deadlines (a busy machine makes
	// dockerd slow); the short ones are what this test checks.
	setup := New(pd.Client, nil)
	e := New(pd.Client, nil)
	e.Timeouts = Timeouts{Call: 2 * time.Second, Start: 3 * time.Second, Remove: 3 * time.Second, StopMargin: 2 * time.Second, Pull: time.Minute}
	e.PullStall = 3 * time.Second
	ctx := t.Context()
	if _, err := setup.EnsureImage(ctx, img.Ref()); err != nil {
		t.Fatal(err)
	}
	d := &testenv.DockerEnv{Client: pd.Client, RunID: "hung"}
	env, pl := deployable(t, d, img, "")
	pl.PublishLoopback = false
	id := launch(t, setup, env, pl)
	if err := setup.WaitHealthy(ctx, id, 2*time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	request := func(slot int) *Request {
		req, err := CreateRequest(env.Project, env.Services[0], Placement{Project: pl.Project, Env: pl.Env, Revision: "r2", Slot: slot})
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	req := request(2)
	other := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "hung-other"})

	pd.Pause()
	resumed := false
	defer func() {
		if !resumed {
			pd.Resume()
		}
	}()
	grace, slack := time.Second, 5*time.Second
	call, starting, remove, stop := e.Timeouts.Call, e.Timeouts.Start, e.Timeouts.Remove, grace+e.Timeouts.StopMargin
	calls := []struct {
		name     string
		deadline time.Duration
		run      func(context.Context) error
	}{
		{"list", call, func(ctx context.Context) error { _, err := e.List(ctx, pl.Env); return err }},
		{"list job runs", call, func(ctx context.Context) error { _, err := e.ListJobRuns(ctx, pl.Env); return err }},
		{"inspect (host port)", call, func(ctx context.Context) error { _, err := e.HostPort(ctx, id, "8080/tcp"); return err }},
		{"inspect (healthcheck)", call, func(ctx context.Context) error { _, err := e.HasHealthcheck(ctx, id); return err }},
		{"wait healthy", call, func(ctx context.Context) error { return e.WaitHealthy(ctx, id, time.Minute, 0) }},
		{"create", starting, func(ctx context.Context) error { _, err := e.Create(ctx, req); return err }},
		{"start", starting, func(ctx context.Context) error { return e.Start(ctx, id) }},
		{"stop", stop, func(ctx context.Context) error { return e.Stop(ctx, id, &grace) }},
		{"kill", call, func(ctx context.Context) error { return e.Kill(ctx, id) }},
		{"remove", remove, func(ctx context.Context) error { return e.Remove(ctx, id) }},
		{"logs", remove, func(ctx context.Context) error { _, _, _, err := e.Logs(ctx, id, 1024); return err }},
		{"network and volumes", call, func(ctx context.Context) error { return e.EnsureProject(ctx, env.Project) }},
		{"image present?", call, func(ctx context.Context) error { _, err := e.EnsureImage(ctx, img.Ref()); return err }},
		{"pull", call, func(ctx context.Context) error { _, err := e.EnsureImage(ctx, other.Ref()); return err }},
		{"prune images", remove + call, func(ctx context.Context) error {
			_, err := e.PruneImages(ctx, nil, []string{img.Ref()})
			return err
		}},
		// The wait of a one-shot notices within its liveness check; its
		// create is the first call here.
		{"one-shot run", starting, func(ctx context.Context) error {
			_, err := e.RunOnce(ctx, request(3), OneShot{Timeout: time.Minute})
			return err
		}},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(calls))
	took := make([]time.Duration, len(calls))
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			errs[i] = c.run(ctx)
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, c := range calls {
		// Slack over the deadline for a loaded machine: what is checked is
		// that each call ends by its deadline rather than hanging.
		if !failure.IsOutage(errs[i]) || took[i] > c.deadline+slack {
			t.Errorf("%s against a hung dockerd: after %s (deadline %s): %v (%s)", c.name, took[i].Round(time.Millisecond), c.deadline, errs[i], failure.Of(errs[i]))
		} else {
			t.Logf("%s: outage after %s (deadline %s)", c.name, took[i].Round(time.Millisecond), c.deadline)
		}
	}

	// A one-shot already waiting when the engine hangs: its liveness
	// check ends the wait as an outage.
	pd.Resume()
	resumed = true
	waiting := make(chan error, 1)
	started := make(chan struct{})
	oneShot := request(4)
	// Its create and start run before the hang, on a machine that may be
	// busy: an engine whose calls have room, checked against its own
	// deadline below.
	waiter := New(pd.Client, nil)
	waiter.Timeouts = e.Timeouts
	waiter.Timeouts.Call = 15 * time.Second
	waiter.Timeouts.Start = DefaultTimeouts.Start
	go func() {
		_, err := waiter.RunOnce(ctx, oneShot, OneShot{Timeout: time.Minute, Started: func(string) { close(started) }})
		waiting <- err
	}()
	select {
	case <-started:
	case err := <-waiting:
		t.Fatalf("one-shot before the hang: %v", err)
	}
	pd.Pause()
	resumed = false
	start := time.Now()
	if err := <-waiting; !failure.IsOutage(err) || time.Since(start) > livenessEvery+waiter.Timeouts.Call+slack {
		t.Errorf("a waiting one-shot against a hung dockerd: after %s: %v (%s)", time.Since(start).Round(time.Millisecond), err, failure.Of(err))
	}

	// SIGCONT: the same Engine works again. (The engine then carries out
	// the requests it had queued: the create above makes a container
	// nobody waits for, a leftover the next deploy removes.)
	pd.Resume()
	resumed = true
	// Its calls keep their short deadlines, which a loaded engine just
	// back from SIGSTOP can miss a few times: each is retried.
	eventually := func(what string, call func() error) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			err := call()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still failing 2 min after SIGCONT: %v", what, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var ms []Managed
	eventually("list", func() (err error) {
		ms, err = e.List(ctx, pl.Env)
		return err
	})
	for _, m := range ms {
		eventually("remove "+m.Name, func() error { return e.Remove(ctx, m.ID) })
	}
	eventually("list after removing everything", func() error {
		ms, err := e.List(ctx, pl.Env)
		if err == nil && len(ms) != 0 {
			return fmt.Errorf("left: %v", ms)
		}
		return err
	})
}
