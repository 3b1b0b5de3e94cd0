package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/reconcile"
)

// fleetWorld is three hosts of one env: each a `berth run` agent with its
// own state dir, Docker engine (a private dockerd: containers are
// labelled by env, so three agents of one env need three engines, as
// three machines have) and nginx, all following one config repo and
// coordinating through one real etcd.
type fleetWorld struct {
	t     *testing.T
	bin   string
	env   string
	etcd  *testenv.Etcd
	reg   *testenv.Registry
	repo  *testenv.GitRepo
	hosts []*fleetHost
	since time.Time
}

type fleetHost struct {
	w      *fleetWorld
	name   string
	state  string
	config string
	log    string
	pd     *testenv.PrivateDocker
	nginx  *testenv.Nginx
	cmd    *exec.Cmd
	done   chan struct{}
}

func newFleetWorld(t *testing.T, n int) *fleetWorld {
	w := &fleetWorld{t: t, bin: testenv.BerthBinary(t), since: time.Now()}
	d := testenv.Docker(t)
	w.env = "f" + d.RunID
	w.etcd = testenv.StartEtcd(t)
	w.reg = testenv.StartRegistry(t)
	git := testenv.StartGitServer(t, testenv.WithBasicAuth("berth", "tok-fleet"))
	w.repo = git.NewRepo(t, "config")
	for i := range n {
		h := &fleetHost{w: w, name: fmt.Sprintf("host-%d", i+1)}
		h.pd = testenv.StartPrivateDocker(t, testenv.PrivateDockerOptions{})
		h.nginx = testenv.NewNginx(t)
		site := fmt.Sprintf("server { listen 127.0.0.1:%d; location / { proxy_pass http://app; } }\n", h.nginx.Port)
		os.WriteFile(filepath.Join(h.nginx.ConfD, "site.conf"), []byte(site), 0o644)
		os.WriteFile(envs.NginxFile(h.nginx.ConfD, w.env, "app"), []byte("upstream app { server 127.0.0.1:1; }\n"), 0o644)
		h.nginx.Start(t)
		dir := t.TempDir()
		h.state, h.log = filepath.Join(dir, "state"), filepath.Join(dir, "agent.log")
		token := filepath.Join(dir, "token")
		os.WriteFile(token, []byte("tok-fleet\n"), 0o600)
		nginxCmd, _ := json.Marshal(append([]string{"nginx"}, h.nginx.Args()...))
		h.config = filepath.Join(dir, "agent.yaml")
		cfg := fmt.Sprintf(`env: %s
state_dir: %s
repo:
  url: %s
  poll_interval: 1s
  auth: {username: berth, token_file: %s}
docker: {host: "%s"}
deploy: {health_timeout: 20s, settle: 500ms}
api: {listen: "unix:%s"}
nginx:
  command: %s
  pid_file: %s
  probe_url: %s/
  conf_dir: %s
fleet:
  etcd: {endpoints: [%s]}
  host: %s
  lease_ttl: 4s
`, w.env, h.state, w.repo.HTTPURL(), token, h.pd.Host, filepath.Join(dir, "api.sock"), nginxCmd,
			filepath.Join(h.nginx.Dir, "nginx.pid"), h.nginx.URL(), h.nginx.ConfD, w.etcd.ClientURL, h.name)
		os.WriteFile(h.config, []byte(cfg), 0o600)
		w.hosts = append(w.hosts, h)
	}
	t.Cleanup(func() {
		for _, h := range w.hosts {
			h.kill()
		}
		if t.Failed() {
			for _, h := range w.hosts {
				t.Logf("%s's journal:\n%s\n%s's log (last lines):\n%s", h.name, h.journalText(), h.name, h.logTail(25))
			}
		}
	})
	return w
}

// fleetRev is one revision of the env.
type fleetRev struct {
	img     testenv.AppImage
	webMode string // serve or unhealthy
	marker  string // APP_MARKER of web: a config change without a new image
	migrate string // the migration's command tag: a new one is a new migration
	sleep   string // how long the migration runs
	idem    bool
	rollout string
}

func (w *fleetWorld) commit(msg string, r fleetRev) string {
	compose := fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    command: ["run", "%[4]s"]
    environment: {APP_MODE: exit, APP_SLEEP: "%[5]s", APP_PRINT_ENV: BERTH_FENCE_TOKEN}
    x-berth: {role: migrate, migration: {idempotent: %[6]t}}
  web:
    image: %[1]s
    environment: {APP_MODE: %[2]s, APP_MARKER: "%[3]s"}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app}
  rollout: %[7]s
`, r.img.Ref(), r.webMode, r.marker, r.migrate, r.sleep, r.idem, r.rollout)
	return w.repo.CommitFiles(w.t, msg, map[string]string{"envs/" + w.env + "/compose.yaml": compose})
}

func (h *fleetHost) start() {
	f, err := os.OpenFile(h.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		h.w.t.Fatal(err)
	}
	h.cmd = exec.Command(h.w.bin, "run", "--config", h.config, "--log-level", "debug")
	h.cmd.Stderr, h.cmd.Stdout = f, f
	if err := h.cmd.Start(); err != nil {
		h.w.t.Fatal(err)
	}
	h.done = make(chan struct{})
	go func() { h.cmd.Wait(); f.Close(); close(h.done) }()
}

func (h *fleetHost) kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
	h.cmd = nil
}

func (h *fleetHost) stateNow() reconcile.State {
	st, _ := reconcile.LoadState(h.state)
	return st
}

func (h *fleetHost) live() string {
	if st := h.stateNow(); st.Live != nil {
		return st.Live.Commit
	}
	return ""
}

func (h *fleetHost) journal() []reconcile.Record {
	recs, _ := (&reconcile.Journal{Dir: filepath.Join(h.state, "deploys")}).List()
	return recs
}

func (h *fleetHost) journalText() string {
	var b strings.Builder
	for _, r := range h.journal() {
		fmt.Fprintf(&b, "  %.12s %s ×%d %s: %s\n", r.Commit, r.Result, r.Count(), r.Phase, oneLineOf(r.Reason))
	}
	return b.String()
}

func oneLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (h *fleetHost) logTail(n int) string {
	b, _ := os.ReadFile(h.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (h *fleetHost) serving() string {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(h.nginx.URL() + "/")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v, _, _ := strings.Cut(string(b), " ")
	return v
}

// migrationRunning says whether a migration container of commit runs on
// this host's engine.
func (h *fleetHost) migrationRunning(commit string) bool {
	cs, err := h.pd.Client.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", engine.LabelService+"=migrate"), filters.Arg("label", engine.LabelRevision+"="+commit), filters.Arg("status", "running"))})
	return err == nil && len(cs) > 0
}

// migrationsCreated counts the migration containers of commit this
// host's engine created since the world began: Docker's own record of
// runs, whatever berth recorded.
func (h *fleetHost) migrationsCreated(commit string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, errs := h.pd.Client.Events(ctx, events.ListOptions{
		Since: h.w.since.Format(time.RFC3339Nano), Until: time.Now().Format(time.RFC3339Nano),
		Filters: filters.NewArgs(filters.Arg("type", "container"), filters.Arg("event", "create"),
			filters.Arg("label", engine.LabelService+"=migrate"), filters.Arg("label", engine.LabelRevision+"="+commit)),
	})
	n := 0
	for {
		select {
		case <-msgs:
			n++
		case err := <-errs:
			if err != nil && err != io.EOF {
				h.w.t.Fatalf("%s: docker events: %v", h.name, err)
			}
			return n
		}
	}
}

func (w *fleetWorld) migrationsCreated(commit string) map[string]int {
	out := map[string]int{}
	for _, h := range w.hosts {
		if n := h.migrationsCreated(commit); n > 0 {
			out[h.name] = n
		}
	}
	return out
}

func (w *fleetWorld) waitFor(what string, timeout time.Duration, ok func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (w *fleetWorld) allLive(commit string) bool {
	for _, h := range w.hosts {
		if h.live() != commit {
			return false
		}
	}
	return true
}

// fleetStatus is `berth fleet status --format json` on host h.
func (h *fleetHost) fleetStatus() fleetStatusJSON {
	out, err := exec.Command(h.w.bin, "fleet", "status", "--config", h.config, "--format", "json").Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) { // 1: a halt, or a host refusing a revision
		h.w.t.Fatalf("berth fleet status: %v\n%s", err, out)
	}
	var s fleetStatusJSON
	if err := json.Unmarshal(out, &s); err != nil {
		h.w.t.Fatalf("berth fleet status: %v\n%s", err, out)
	}
	return s
}

type fleetStatusJSON struct {
	Envs []struct {
		Env   string `json:"env"`
		Hosts []struct {
			Host  string `json:"host"`
			Alive bool   `json:"alive"`
			Live  *struct {
				Revision, Author, Subject string
			} `json:"live"`
			Version string            `json:"version"`
			Health  map[string]string `json:"health"`
		} `json:"hosts"`
		Halts []struct {
			Revision string `json:"revision"`
		} `json:"halts"`
		Migrations []struct {
			Status, Service, Host, Note, Revision string
		} `json:"migrations"`
	} `json:"envs"`
}

// turns are the fleet turns of commit's deploys across the hosts.
func (w *fleetWorld) turns(commit string) map[string]*reconcile.FleetTurn {
	out := map[string]*reconcile.FleetTurn{}
	for _, h := range w.hosts {
		for _, r := range h.journal() {
			if r.Commit == commit && r.Fleet != nil && !r.Fleet.Admitted.IsZero() {
				out[h.name] = r.Fleet
				break
			}
		}
	}
	return out
}

// maxOverlap is the most admitted-to-released windows open at once.
func maxOverlap(turns map[string]*reconcile.FleetTurn) int {
	type edge struct {
		at   time.Time
		open int
	}
	var es []edge
	for _, tr := range turns {
		es = append(es, edge{tr.Admitted, 1}, edge{tr.Released, -1})
	}
	slices.SortFunc(es, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.open - b.open // a release at the same instant first
	})
	n, most := 0, 0
	for _, e := range es {
		n += e.open
		most = max(most, n)
	}
	return most
}

// TestE2E_FleetOfThreeAgents runs three `berth run` agents of one env
// against one etcd, one Git server and one registry, and goes through a
// fleet's life in order (each step starts from the state the last one
// left, so they share one world and run in sequence):
//  1. the first revision rolls out in waves (canary first, then at most
//     max_parallel: 1 host deploying at a time, from the journals' fleet
//     turns) and its migration runs once (Docker's own events, across the
//     three engines), with BERTH_FENCE_TOKEN; the others' journals say
//     where it ran; berth fleet status shows the three with the commit's
//     author and subject;
//  2. a revision that fails on its canary halts fleet-wide: the others
//     never start it, and that survives restarting every agent;
//  3. SIGKILL of the agent running a migration: the migration is
//     interrupted and the revision halted, never run a second time;
//  4. the same with a migration declared idempotent: another host takes
//     it over and the revision completes everywhere;
//  5. etcd stopped mid-rollout: the hosts keep serving, status says
//     waiting for etcd, and the rollout completes once etcd is back.
func TestE2E_FleetOfThreeAgents(t *testing.T) {
	t.Parallel()
	w := newFleetWorld(t, 3)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	const waves = "{canary: 1, max_parallel: 1}"

	t.Log("1. first release: waves, the migration once, status")
	c1 := w.commit("c1: first release", fleetRev{img: v1, webMode: "serve", migrate: "m1", sleep: "2s", rollout: waves})
	for _, h := range w.hosts {
		h.start()
	}
	w.waitFor("every host live on c1", 4*time.Minute, func() bool { return w.allLive(c1) })
	if got := w.migrationsCreated(c1); len(got) != 1 || sum(got) != 1 {
		t.Fatalf("c1's migration containers by host: %v, want exactly one run in the fleet", got)
	}
	ran, skipped := "", 0
	for _, h := range w.hosts {
		for _, r := range h.journal() {
			if r.Commit != c1 || r.Result != reconcile.ResultSucceeded {
				continue
			}
			for _, o := range r.OneShots {
				switch {
				case o.Service != "migrate":
				case o.Skipped == "":
					ran = h.name
					if !strings.Contains(o.Output, "testapp env BERTH_FENCE_TOKEN set") {
						t.Errorf("%s ran the migration without BERTH_FENCE_TOKEN: %q", h.name, o.Output)
					}
				case strings.HasPrefix(o.Skipped, "ran on host "):
					skipped++
				}
			}
		}
	}
	if ran == "" || skipped != 2 {
		t.Fatalf("journals: migration ran on %q, skipped as ran elsewhere on %d hosts; want one and two", ran, skipped)
	}
	for _, h := range w.hosts {
		if h.name != ran && !strings.Contains(h.journalOneShots(c1), "ran on host "+ran) {
			t.Errorf("%s's journal does not say the migration ran on %s: %s", h.name, ran, h.journalOneShots(c1))
		}
	}
	turns := w.turns(c1)
	if len(turns) != 3 {
		t.Fatalf("fleet turns of c1: %v", turns)
	}
	checkWaves(t, turns, 1)
	st := w.hosts[0].fleetStatus()
	if len(st.Envs) != 1 || len(st.Envs[0].Hosts) != 3 {
		t.Fatalf("fleet status: %+v", st)
	}
	for _, h := range st.Envs[0].Hosts {
		if !h.Alive || h.Live == nil || h.Live.Revision != c1 || h.Live.Subject != "c1: first release" || h.Live.Author == "" || h.Version == "" {
			t.Errorf("fleet status of %s: %+v (live %+v)", h.Host, h, h.Live)
		}
	}
	table, _ := exec.Command(w.bin, "fleet", "status", "--config", w.hosts[1].config).CombinedOutput()
	for _, want := range []string{"host-1", "host-2", "host-3", "c1: first release", fmt.Sprintf("%.12s", c1)} {
		if !strings.Contains(string(table), want) {
			t.Errorf("berth fleet status lacks %q:\n%s", want, table)
		}
	}
	t.Logf("c1 rolled out: migration ran on %s; turns %s", ran, turnsText(turns))

	t.Log("2. a canary failure halts the revision fleet-wide, across restarts")
	c2 := w.commit("c2: broken release", fleetRev{img: v2, webMode: "unhealthy", migrate: "m1", sleep: "2s", rollout: waves})
	var canary *fleetHost
	w.waitFor("c2 failed on its canary", 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if st := h.stateNow(); st.Failed != nil && st.Failed.Commit == c2 {
				canary = h
				return true
			}
		}
		return false
	})
	w.waitFor("the other hosts hold c2", 2*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h != canary && (h.stateNow().FleetHeld == nil || h.stateNow().FleetHeld.Commit != c2) {
				return false
			}
		}
		return true
	})
	restarted := time.Now()
	for _, h := range w.hosts {
		h.kill()
		h.start()
	}
	w.waitFor("every agent checked the head again after its restart", 2*time.Minute, func() bool {
		for _, h := range w.hosts {
			recs := h.journal()
			if len(recs) == 0 || recs[0].LastPass.Before(restarted) && recs[0].Finished.Before(restarted) {
				return false
			}
		}
		return true
	})
	for _, h := range w.hosts {
		if h.live() != c1 {
			t.Errorf("%s: live %.12s, want c1 kept", h.name, h.live())
		}
		if got := h.serving(); got != "version=v1" {
			t.Errorf("%s serves %q, want v1", h.name, got)
		}
		if h == canary {
			continue
		}
		for _, r := range h.journal() {
			if r.Commit == c2 && (r.Fleet != nil && !r.Fleet.Admitted.IsZero() || r.Changed) {
				t.Errorf("%s started c2 after the canary failed: %+v", h.name, r)
			}
		}
	}
	if got := w.migrationsCreated(c2); sum(got) != 1 || got[canary.name] != 1 {
		t.Errorf("c2's migration (a new image: a new migration) by host: %v, want once, on the canary %s", got, canary.name)
	}
	t.Logf("c2 failed on %s, held by the others across restarts", canary.name)

	t.Log("3. SIGKILL of a migration's runner: interrupted, halted, not run twice")
	c3 := w.commit("c3: slow migration", fleetRev{img: v2, webMode: "serve", migrate: "m3", sleep: "45s", rollout: waves})
	runner := w.waitMigrationRunner(c3)
	runner.kill()
	w.waitFor("c3 refused on the other hosts (migration interrupted)", 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h == runner {
				continue
			}
			st := h.stateNow()
			if !(st.Failed != nil && st.Failed.Commit == c3 || st.FleetHeld != nil && st.FleetHeld.Commit == c3) {
				return false
			}
		}
		return true
	})
	interrupted := false
	for _, m := range w.hosts[0].fleetStatus().Envs[0].Migrations {
		if m.Revision == c3 && m.Status == "interrupted" && m.Host == runner.name {
			interrupted = true
		}
	}
	if !interrupted {
		t.Errorf("fleet status: no interrupted migration of c3 on %s: %+v", runner.name, w.hosts[0].fleetStatus().Envs[0].Migrations)
	}
	if got := w.migrationsCreated(c3); sum(got) != 1 || got[runner.name] != 1 {
		t.Fatalf("c3's migration containers by host: %v: want one, on %s", got, runner.name)
	}
	runner.start()
	for _, h := range w.hosts {
		if h.live() != c1 {
			t.Errorf("%s: live %.12s after c3 was halted, want c1", h.name, h.live())
		}
	}
	t.Logf("c3's migration interrupted on %s; the fleet halted c3", runner.name)

	t.Log("4. the same with an idempotent migration: another host takes it over")
	c4 := w.commit("c4: idempotent migration", fleetRev{img: v2, webMode: "serve", migrate: "m4", sleep: "20s", idem: true, rollout: waves})
	runner4 := w.waitMigrationRunner(c4)
	runner4.kill()
	w.waitFor("c4 live on the other hosts", 4*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h != runner4 && h.live() != c4 {
				return false
			}
		}
		return true
	})
	runner4.start()
	w.waitFor("c4 live on the restarted runner too", 3*time.Minute, func() bool { return w.allLive(c4) })
	got := w.migrationsCreated(c4)
	if sum(got) != 2 || got[runner4.name] != 1 {
		t.Errorf("c4's migration containers by host: %v: want the killed runner's and one takeover", got)
	}
	took := false
	for _, m := range w.hosts[0].fleetStatus().Envs[0].Migrations {
		if m.Revision == c4 && m.Status == "done" && m.Host != runner4.name && strings.Contains(m.Note, "took over") {
			took = true
		}
	}
	if !took {
		t.Errorf("fleet status: c4's migration not done by another host: %+v", w.hosts[0].fleetStatus().Envs[0].Migrations)
	}
	t.Logf("c4's migration taken over after %s was killed", runner4.name)

	t.Log("5. etcd stopped mid-rollout: hosts keep serving, then the rollout completes")
	// The pause after the canary keeps the other hosts waiting at its
	// gate while etcd stops, however slow the machine: the rollout is
	// mid-way, not done before the test notices the canary.
	c5 := w.commit("c5: rollout through an etcd outage", fleetRev{img: v1, webMode: "serve", marker: "c5", migrate: "m5", sleep: "1s",
		rollout: "{canary: 1, max_parallel: 1, pause: 10s}"})
	w.waitFor("c5 live on its canary", 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h.live() == c5 {
				return true
			}
		}
		return false
	})
	w.etcd.Stop()
	stopped := time.Now()
	// A host waiting at the gate or queued for the slot sits in a watch:
	// it says "waiting for etcd" once its session's keepalives go
	// unanswered (about half the lease TTL), before the lease lapses.
	w.waitFor("a host waiting for etcd", 2*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h.live() != c5 && strings.Contains(h.apiStatus(), "waiting for etcd") {
				return true
			}
		}
		return false
	})
	t.Logf("a host waiting for etcd %s after it stopped", time.Since(stopped).Round(100*time.Millisecond))
	for time.Since(stopped) < 8*time.Second { // twice the lease TTL
		for _, h := range w.hosts {
			if got := h.serving(); !strings.HasPrefix(got, "version=") {
				t.Fatalf("%s stopped serving while etcd was down: %q", h.name, got)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	w.etcd.Start()
	w.waitFor("c5 live everywhere after etcd returned", 4*time.Minute, func() bool { return w.allLive(c5) })
	checkWaves(t, w.turns(c5), 1)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// checkWaves asserts the canary went first and at most maxParallel hosts
// were inside a deploy at once.
func checkWaves(t *testing.T, turns map[string]*reconcile.FleetTurn, maxParallel int) {
	t.Helper()
	var canaries []string
	for h, tr := range turns {
		if tr.Canary {
			canaries = append(canaries, h)
		}
	}
	if len(canaries) != 1 {
		t.Errorf("canaries %v, want one: %s", canaries, turnsText(turns))
		return
	}
	c := turns[canaries[0]]
	for h, tr := range turns {
		if h != canaries[0] && tr.Admitted.Before(c.Released) {
			t.Errorf("%s was let in before the canary %s finished: %s", h, canaries[0], turnsText(turns))
		}
	}
	if n := maxOverlap(turns); n > maxParallel {
		t.Errorf("%d hosts deploying at once, max_parallel %d: %s", n, maxParallel, turnsText(turns))
	}
}

func turnsText(turns map[string]*reconcile.FleetTurn) string {
	var parts []string
	for _, h := range slices.Sorted(maps.Keys(turns)) {
		tr := turns[h]
		parts = append(parts, fmt.Sprintf("%s[canary=%t %s→%s]", h, tr.Canary, tr.Admitted.Format("15:04:05.000"), tr.Released.Format("15:04:05.000")))
	}
	return strings.Join(parts, " ")
}

func (h *fleetHost) journalOneShots(commit string) string {
	var parts []string
	for _, r := range h.journal() {
		if r.Commit == commit {
			for _, o := range r.OneShots {
				parts = append(parts, o.Service+": "+o.Skipped)
			}
		}
	}
	return strings.Join(parts, "; ")
}

// waitMigrationRunner waits until one host's engine runs commit's
// migration and returns that host.
func (w *fleetWorld) waitMigrationRunner(commit string) *fleetHost {
	w.t.Helper()
	var runner *fleetHost
	w.waitFor(fmt.Sprintf("%.12s's migration running somewhere", commit), 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h.migrationRunning(commit) {
				runner = h
				return true
			}
		}
		return false
	})
	return runner
}

// apiStatus is the agent's /api/status (its view of the pass in flight
// included), or the error.
func (h *fleetHost) apiStatus() string {
	sock := filepath.Join(filepath.Dir(h.config), "api.sock")
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://berth/api/status")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
