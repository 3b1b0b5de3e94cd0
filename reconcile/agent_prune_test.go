package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"berth.dev/berth/envs"
)

type fakePruner struct{ keep, candidates []string }

func (p *fakePruner) PruneImages(_ context.Context, keep, candidates []string) ([]string, error) {
	p.keep, p.candidates = keep, candidates
	return nil, nil
}

func TestAgent_PrunesImagesAndWorkingCopiesOfRevisionsBeyondTheKeptOnes(t *testing.T) {
	host := newFakeHost()
	src := &fakeSource{head: "c1"}
	a, _ := newAgent(t, src, host)
	p := &fakePruner{}
	a.Pruner = p
	ctx := t.Context()
	for _, c := range []string{"c1", "c2", "c3"} {
		src.head = c
		if err := a.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(p.keep, []string{"r/app@c3", "r/app@c2"}) || !slices.Equal(p.candidates, []string{"r/app@c1"}) {
		t.Fatalf("keep %v, candidates %v", p.keep, p.candidates)
	}
	if !slices.Equal(src.kept, []string{"c3", "c2", "c3"}) {
		t.Fatalf("working copies kept %v, want c3 and c2 (c3 live)", src.kept)
	}
}

type fakeSecrets struct {
	mu     sync.Mutex
	digest string
	err    error
	asked  []string
}

func (f *fakeSecrets) Resolve(_ context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error) {
	f.mu.Lock() // services resolve in parallel
	defer f.mu.Unlock()
	f.asked = append(f.asked, service)
	if f.err != nil {
		return nil, "", f.err
	}
	return []string{"DB_PASSWORD=value-" + f.digest}, f.digest, nil
}

func TestDeploy_SecretsResolvedFirstAndTheirDigestRedeploys(t *testing.T) {
	host := newFakeHost()
	sec := &fakeSecrets{digest: "d1"}
	d := &Deployer{Images: host, Containers: host, Observer: host, OneShots: noOneShots{}, Secrets: sec,
		Switcher: func(*envs.Env) Switcher { return &fakeSwitch{} }}
	env := fakeEnv("c1")
	env.Services[0].Berth.Secrets = map[string]envs.SecretRef{"DB_PASSWORD": {Path: "kv/db", Field: "pw"}}
	ctx := t.Context()
	if _, err := d.Deploy(ctx, Input{Env: env, Revision: "c1"}); err != nil {
		t.Fatal(err)
	}
	res, err := d.Deploy(ctx, Input{Env: env, Revision: "c1"})
	if err != nil || res.Changed {
		t.Fatalf("same secret version: changed %v, %v", res.Changed, err)
	}
	sec.digest = "d2"
	res, err = d.Deploy(ctx, Input{Env: env, Revision: "c1"})
	if err != nil || !res.Changed || res.Actions[0].Reason != "config or secrets changed" {
		t.Fatalf("new secret version: %+v, %v (the reason shows no hash: it mixes in the secrets' digests)", res, err)
	}
	sec.err = errors.New("vault: permission denied on kv/db")
	before := host.running()
	_, err = d.Deploy(ctx, Input{Env: env, Revision: "c2"})
	if err == nil || err.Error() != "prepare: service web: vault: permission denied on kv/db" {
		t.Fatalf("unresolvable secret: %v", err)
	}
	if !slices.Equal(host.running(), before) {
		t.Fatalf("a secret failure touched containers: %v → %v", before, host.running())
	}
	d.Secrets = nil
	if _, err := d.Deploy(ctx, Input{Env: env, Revision: "c2"}); err == nil || !strings.Contains(err.Error(), "no secrets backend is configured") {
		t.Fatalf("secrets without a backend: %v", err)
	}
}

func TestDeploy_WorkerOrder_StartFirstUnlessStopFirst(t *testing.T) {
	for _, stopFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("stop_first %v", stopFirst), func(t *testing.T) {
			host := newFakeHost()
			d := &Deployer{Images: host, Containers: host, Observer: host, OneShots: noOneShots{}}
			env := func(c string) *envs.Env {
				e := fakeEnv(c)
				e.Services[0].Name, e.Services[0].Berth = "worker", envs.ServiceSpec{Role: envs.RoleWorker, StopFirst: stopFirst}
				e.Project.Services = types.Services{"worker": e.Services[0].Config}
				return e
			}
			for _, c := range []string{"c1", "c2"} {
				if _, err := d.Deploy(t.Context(), Input{Env: env(c), Revision: c}); err != nil {
					t.Fatal(err)
				}
			}
			got := strings.Join(host.calls, ", ")
			want := "create worker@c1, create worker@c2, stop worker@c1"
			if stopFirst {
				want = "create worker@c1, stop worker@c1, create worker@c2"
			}
			if got != want {
				t.Fatalf("calls %s, want %s", got, want)
			}
		})
	}
}
