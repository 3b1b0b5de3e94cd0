package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
deploy: {health_timeout: 2m, settle: 500ms}
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

func (h *fleetHost) serving() string { return version(h.nginx.URL() + "/") }

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
