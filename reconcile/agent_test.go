package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/migrate"
)

// fakeHost is an in-memory engine: containers are records, images are
// present once pulled, and chosen images fail their health gate.
type fakeHost struct {
	mu         sync.Mutex
	containers map[string]*engine.Managed
	next       int
	pulls      []string
	unhealthy  map[string]bool // image → never healthy
	pullErr    error
	listErr    error
	onCreate   func() // runs inside Create (a panic, say)
	onHealth   func(ctx context.Context) error
	onStop     func()   // runs inside Stop
	calls      []string // "create web@c1", "stop web@c1", …
}

func (f *fakeHost) record(op, id string) {
	if c, ok := f.containers[id]; ok {
		f.calls = append(f.calls, op+" "+c.Service+"@"+c.Revision)
	}
}

func newFakeHost() *fakeHost {
	return &fakeHost{containers: map[string]*engine.Managed{}, unhealthy: map[string]bool{}}
}

func (f *fakeHost) EnsureImage(_ context.Context, ref string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pullErr != nil {
		return false, f.pullErr
	}
	f.pulls = append(f.pulls, ref)
	return true, nil
}
func (f *fakeHost) EnsureProject(context.Context, *types.Project) error { return nil }
func (f *fakeHost) Create(_ context.Context, req *engine.Request) (string, error) {
	if f.onCreate != nil {
		f.onCreate()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	id := fmt.Sprintf("c%d", f.next)
	l := req.Config.Labels
	var slot int
	fmt.Sscan(l[engine.LabelSlot], &slot)
	f.containers[id] = &engine.Managed{ID: id, Name: req.Name, Service: l[engine.LabelService], Role: l[engine.LabelRole], Slot: slot,
		Revision: l[engine.LabelRevision], ConfigHash: l[engine.LabelConfigHash], Image: req.Config.Image, State: "created"}
	f.record("create", id)
	return id, nil
}
func (f *fakeHost) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[id].State = "running"
	return nil
}
func (f *fakeHost) Stop(_ context.Context, id string, _ *time.Duration) error {
	if f.onStop != nil {
		f.onStop()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.containers[id]; ok && c.State == "running" {
		c.State = "exited"
		f.record("stop", id)
	}
	return nil
}
func (f *fakeHost) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.containers, id)
	return nil
}
func (f *fakeHost) List(context.Context, string) ([]engine.Managed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []engine.Managed
	for _, c := range f.containers {
		out = append(out, *c)
	}
	return out, nil
}
func (f *fakeHost) WaitHealthy(ctx context.Context, id string, _, _ time.Duration) error {
	if f.onHealth != nil {
		if err := f.onHealth(ctx); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unhealthy[f.containers[id].Image] {
		return errors.New("container never healthy")
	}
	return nil
}
func (f *fakeHost) HostPort(context.Context, string, string) (string, error) { return "32768", nil }
func (f *fakeHost) HasHealthcheck(context.Context, string) (bool, error)     { return true, nil }

func (f *fakeHost) running() []string {
	f.mu.Lock()
	saved := f.listErr
	f.listErr = nil
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.listErr = saved; f.mu.Unlock() }()
	ms, _ := f.List(context.Background(), "")
	var out []string
	for _, m := range ms {
		if m.State == "running" {
			out = append(out, m.Service+"@"+m.Revision)
		}
	}
	return out
}

type fakeSwitch struct{ backends []string }

func (s *fakeSwitch) Switch(_ context.Context, b []string) error { s.backends = b; return nil }

type noOneShots struct{}

func (noOneShots) Run(context.Context, []migrate.Job) ([]migrate.Record, error) { return nil, nil }

// fakeSource serves commits whose env runs image "<commit>-img".
type fakeSource struct {
	head    string
	listErr error
	refuse  map[string]error
	fetches []string
	kept    []string // the last Prune's keep list
}

func (s *fakeSource) Head(context.Context) (string, error) { return s.head, s.listErr }
func (s *fakeSource) Fetch(_ context.Context, commit, _ string) (*Revision, error) {
	s.fetches = append(s.fetches, commit)
	if err := s.refuse[commit]; err != nil {
		return nil, failure.AsVerdict(err)
	}
	return &Revision{Commit: commit, Dir: commit}, nil
}

func (s *fakeSource) Prune(keep ...string) error { s.kept = keep; return nil }

func fakeEnv(commit string) *envs.Env {
	s := envs.Service{Name: "web", Berth: envs.ServiceSpec{Role: envs.RoleServer, Port: 8080}, Hash: "h-" + commit}
	s.Config.Image = "r/app@" + commit
	s.Config.Name = "web"
	p := &types.Project{Name: "prod", Services: types.Services{"web": s.Config}, Networks: types.Networks{"default": {Name: "prod_default"}}}
	return &envs.Env{Name: "prod", Project: p, Services: []envs.Service{s}, LB: &envs.LBSpec{Type: "nginx", Upstream: "app"}}
}

func newAgent(t *testing.T, src *fakeSource, host *fakeHost) (*Agent, *fakeSwitch) {
	sw := &fakeSwitch{}
	dir := t.TempDir()
	return &Agent{
		Journal:  &Journal{Dir: dir + "/deploys"},
		Source:   src,
		Load:     func(_ context.Context, rev *Revision) (*envs.Env, error) { return fakeEnv(rev.Commit), nil },
		StateDir: dir,
		Deployer: &Deployer{Images: host, Containers: host, Observer: host, OneShots: noOneShots{},
			Switcher: func(*envs.Env) Switcher { return sw }},
	}, sw
}

// failedHead is an agent whose host runs c1 after c2 failed its health gate.
func failedHead(t *testing.T) (*Agent, *fakeHost, *fakeSource) {
	t.Helper()
	host := newFakeHost()
	src := &fakeSource{head: "c1"}
	a, _ := newAgent(t, src, host)
	if err := a.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	host.unhealthy["r/app@c2"] = true
	src.head = "c2"
	if err := a.Check(t.Context()); err != nil {
		t.Fatalf("a failed deploy is recorded, not returned: %v", err)
	}
	return a, host, src
}

func TestAgent_FailedHeadIsNotRetriedAndTheLiveRevisionIsKeptWhole(t *testing.T) {
	a, host, src := failedHead(t)
	ctx := t.Context()
	st, _ := LoadState(a.StateDir)
	if st.Live.Commit != "c1" || st.Failed == nil || st.Failed.Commit != "c2" || !strings.Contains(st.Failed.Reason, "never healthy") {
		t.Fatalf("state after the failure: live %+v failed %+v", st.Live, st.Failed)
	}
	// A container of the live revision dies; the next checks restore it
	// and never try c2 again.
	for id, c := range host.containers {
		if c.Service == "web" {
			host.containers[id].State = "exited"
		}
	}
	pulls := len(host.pulls)
	for range 3 {
		if err := a.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(host.running(), ","); got != "web@c1" {
		t.Fatalf("running %s, want web@c1 restored", got)
	}
	for _, p := range host.pulls[pulls:] {
		if strings.Contains(p, "c2") {
			t.Fatalf("the failed head was retried: pulls %v", host.pulls)
		}
	}
	st, _ = LoadState(a.StateDir)
	if st.Failed == nil || st.Failed.Commit != "c2" {
		t.Fatalf("restoring the live revision forgot that c2 failed: %+v", st.Failed)
	}
	host.unhealthy = map[string]bool{}
	src.head = "c3"
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = LoadState(a.StateDir)
	if st.Live.Commit != "c3" || st.Failed != nil || strings.Join(host.running(), ",") != "web@c3" {
		t.Fatalf("after a new good commit: live %+v failed %+v running %v", st.Live, st.Failed, host.running())
	}
}

func TestAgent_RefusedHeadKeepsTheHostAndTransientErrorsReturn(t *testing.T) {
	host := newFakeHost()
	src := &fakeSource{head: "c1", refuse: map[string]error{"c2": errors.New("history rewrite refused")}}
	a, _ := newAgent(t, src, host)
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	src.head = "c2"
	if err := a.Check(ctx); err != nil {
		t.Fatalf("a refusal is recorded, not returned: %v", err)
	}
	st, _ := LoadState(a.StateDir)
	if st.Failed == nil || st.Failed.Commit != "c2" || st.Live.Commit != "c1" {
		t.Fatalf("state %+v %+v", st.Live, st.Failed)
	}
	src.listErr = errors.New("dial tcp: connection refused")
	if err := a.Check(ctx); err == nil {
		t.Fatal("an unreachable repo must be returned for the poller's backoff")
	}
	if got := strings.Join(host.running(), ","); got != "web@c1" {
		t.Fatalf("running %s", got)
	}
}

func TestAgent_JournalRecordsEveryDeployAndRecoversInterruptedOnes(t *testing.T) {
	a, _, _ := failedHead(t)
	ctx := t.Context()
	a.Check(ctx) // no change: a record of its own (the pass before failed)
	a.Check(ctx) // no change again: counted into it
	recs, err := a.Journal.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Result != ResultUnchanged || recs[0].Count() != 2 || recs[1].Commit != "c2" || recs[1].Result != ResultFailed || recs[2].Result != ResultSucceeded {
		t.Fatalf("records %+v", recs)
	}
	if !strings.Contains(recs[1].Reason, "never healthy") || recs[1].Class != "verdict" || len(recs[1].Actions) == 0 || len(recs[2].Phases) != 5 {
		t.Fatalf("record content %+v", recs[1])
	}
	// A record left running by a killed agent.
	running := Record{ID: newDeployID(), Commit: "c9", Result: ResultRunning, Phase: "servers"}
	a.Journal.Write(&running)
	got, err := a.Journal.Recover()
	if err != nil || len(got) != 1 || got[0].Result != ResultInterrupted || got[0].Reason != "the agent stopped during phase servers" {
		t.Fatalf("Recover: %+v, %v", got, err)
	}
}

func TestAgent_RollbackHoldsUntilANewCommitOrResume(t *testing.T) {
	for _, untilResume := range []bool{false, true} {
		t.Run(fmt.Sprintf("hold until resume %v", untilResume), func(t *testing.T) {
			host := newFakeHost()
			src := &fakeSource{head: "c1"}
			a, _ := newAgent(t, src, host)
			a.HoldUntilResume = untilResume
			ctx := t.Context()
			a.Check(ctx)
			src.head = "c2"
			a.Check(ctx)
			if err := SubmitRequest(a.StateDir, Request{Action: "rollback", Commit: "c1"}); err != nil {
				t.Fatal(err)
			}
			a.Check(ctx)
			a.Check(ctx)
			if got := strings.Join(host.running(), ","); got != "web@c1" {
				t.Fatalf("after rollback running %s, want web@c1", got)
			}
			src.head = "c3"
			a.Check(ctx)
			want := "web@c3"
			if untilResume {
				want = "web@c1"
			}
			if got := strings.Join(host.running(), ","); got != want {
				t.Fatalf("after a new commit running %s, want %s", got, want)
			}
			SubmitRequest(a.StateDir, Request{Action: "resume"})
			a.Check(ctx)
			if got := strings.Join(host.running(), ","); got != "web@c3" {
				t.Fatalf("after resume running %s, want web@c3", got)
			}
		})
	}
}

func TestAgent_RetryDeploysTheFailedHeadAgain(t *testing.T) {
	a, host, _ := failedHead(t)
	ctx := t.Context()
	delete(host.unhealthy, "r/app@c2") // e.g. a database it needed is back
	a.Check(ctx)
	if got := strings.Join(host.running(), ","); got != "web@c1" {
		t.Fatalf("failed head retried without being asked: %s", got)
	}
	SubmitRequest(a.StateDir, Request{Action: "retry"})
	a.Check(ctx)
	if got := strings.Join(host.running(), ","); got != "web@c2" {
		t.Fatalf("after retry running %s, want web@c2", got)
	}
}
