package reconcile

import (
	"strings"
	"testing"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
)

func testEnv() *envs.Env {
	svc := func(name string, role envs.Role, image, hash string) envs.Service {
		s := envs.Service{Name: name, Berth: envs.ServiceSpec{Role: role}, Hash: hash}
		s.Config.Image = image
		return s
	}
	return &envs.Env{Name: "prod", Services: []envs.Service{
		svc("migrate", envs.RoleMigrate, "r/app@sha256:bbbb", "hm"),
		svc("worker", envs.RoleWorker, "r/app@sha256:bbbb", "hw2"),
		svc("web", envs.RoleServer, "r/app@sha256:bbbb", "hs2"),
		svc("cache", envs.RoleWorker, "r/cache@sha256:cccc", "hc"),
	}}
}

func hashes(env *envs.Env) map[string]string {
	h := map[string]string{}
	for _, s := range env.Services {
		h[s.Name] = s.Hash
	}
	return h
}

func render(actions []Action) string {
	var lines []string
	for _, a := range actions {
		lines = append(lines, a.String())
	}
	return strings.Join(lines, "\n")
}

func TestPlan_ExplainsEveryAction(t *testing.T) {
	env := testEnv()
	actual := []engine.Managed{
		{ID: "1", Service: "worker", Slot: 1, ConfigHash: "hw1", Image: "r/app@sha256:bbbb", State: "running"},
		{ID: "2", Service: "web", Slot: 3, ConfigHash: "hs1", Image: "r/app@sha256:aaaa", State: "running"},
		{ID: "3", Service: "web", Slot: 2, ConfigHash: "hs0", Image: "r/app@sha256:9999", State: "exited"},
		{ID: "4", Service: "cache", Slot: 1, ConfigHash: "hc", Image: "r/cache@sha256:cccc", State: "running"},
		{ID: "5", Service: "old-cron", Slot: 1, ConfigHash: "x", State: "running"},
	}
	got := render(Plan(env, hashes(env), actual))
	want := strings.Join([]string{
		"migrate: run, runs with every deploy that changes something",
		"worker: replace, config changed (hash hw1→hw2)",
		"web: replace, image digest changed sha256:aaaa→sha256:bbbb",
		"cache: keep",
		"old-cron: remove, no longer in the config",
	}, "\n")
	if got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
}

func TestPlan_NoChangeRunsNothing(t *testing.T) {
	env := testEnv()
	actual := []engine.Managed{
		{ID: "1", Service: "worker", Slot: 4, ConfigHash: "hw2", State: "running"},
		{ID: "2", Service: "web", Slot: 7, ConfigHash: "hs2", State: "running"},
		{ID: "3", Service: "cache", Slot: 1, ConfigHash: "hc", State: "running"},
	}
	actions := Plan(env, hashes(env), actual)
	if Changes(actions) {
		t.Fatalf("a host matching its config plans changes:\n%s", render(actions))
	}
	for _, a := range actions {
		if a.Kind == Run {
			t.Fatalf("one-shot %s planned with nothing else changing", a.Service)
		}
	}
}

func TestPlan_DeadOrDuplicateContainers(t *testing.T) {
	env := testEnv()
	actual := []engine.Managed{
		{ID: "1", Service: "worker", Slot: 1, ConfigHash: "hw2", State: "exited"},
		{ID: "2", Service: "web", Slot: 1, ConfigHash: "hs2", State: "running"},
		{ID: "3", Service: "web", Slot: 2, ConfigHash: "hs2", State: "created"}, // left by an interrupted cutover
		{ID: "4", Service: "cache", Slot: 1, ConfigHash: "hc", State: "running", Health: "starting"},
	}
	actions := Plan(env, hashes(env), actual)
	got := render(actions)
	for _, want := range []string{"worker: replace, container exited", "web: keep, remove 1 stale container(s)", "cache: replace, container starting"} {
		if !strings.Contains(got, want) {
			t.Errorf("plan lacks %q:\n%s", want, got)
		}
	}
	for _, a := range actions {
		if a.Service == "worker" && nextSlot(a) != 2 {
			t.Errorf("next slot of worker = %d, want 2", nextSlot(a))
		}
	}
}
