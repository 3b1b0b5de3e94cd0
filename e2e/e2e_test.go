// Package e2e drives the built berth binary like an operator would: an
// agent config, a config repo on a real Git server, a real Docker engine,
// registry and nginx. It holds only tests.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/testenv"
)

// world is one host and its config repo.
type world struct {
	t                   testing.TB
	bin                 string
	env                 string
	d                   *testenv.DockerEnv
	reg                 *testenv.Registry
	git                 *testenv.GitServer
	repo                *testenv.GitRepo
	nginx               *testenv.Nginx
	apiSock, hookSecret string
	lbFile              string
	state               string
	config              string
}

func newWorld(t testing.TB) *world {
	w := &world{t: t, bin: testenv.BerthBinary(t), d: testenv.Docker(t)}
	w.env = "e" + w.d.RunID
	w.d.CleanupLabel(t, engine.LabelEnv, w.env)
	w.d.CleanupLabel(t, "com.docker.compose.project", w.env)
	w.reg = testenv.StartRegistry(t)
	w.git = testenv.StartGitServer(t, testenv.WithBasicAuth("berth", "tok-e2e"))
	w.repo = w.git.NewRepo(t, "config")
	w.nginx, w.lbFile = testenv.StartProxy(t, "app", "127.0.0.1:1")
	// The operator's bootstrap upstream file, under berth's name for the
	// env's upstream: berth takes over no other (docs/security.md).
	named := envs.NginxFile(filepath.Dir(w.lbFile), w.env, "app")
	if err := os.Rename(w.lbFile, named); err != nil {
		t.Fatal(err)
	}
	w.lbFile = named

	dir := t.TempDir()
	w.state = filepath.Join(dir, "state")
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("tok-e2e\n"), 0o600)
	w.apiSock, w.hookSecret = filepath.Join(dir, "api.sock"), "hook-secret-e2e"
	os.WriteFile(filepath.Join(dir, "hook"), []byte(w.hookSecret+"\n"), 0o600)
	nginxCmd, _ := json.Marshal(append([]string{"nginx"}, w.nginx.Args()...))
	w.config = filepath.Join(dir, "agent.yaml")
	cfg := fmt.Sprintf(`env: %s
state_dir: %s
repo:
  url: %s
  poll_interval: 1s
  auth: {username: berth, token_file: %s}
deploy: {health_timeout: 2m, settle: 1s}
policy: {min_job_interval: 1s}
api: {listen: "unix:%s", webhook_secret_file: %s}
nginx:
  command: %s
  pid_file: %s
  probe_url: %s/
  conf_dir: %s
`, w.env, w.state, w.repo.HTTPURL(), token, w.apiSock, filepath.Join(dir, "hook"), nginxCmd, filepath.Join(w.nginx.Dir, "nginx.pid"), w.nginx.URL(), filepath.Dir(w.lbFile))
	os.WriteFile(w.config, []byte(cfg), 0o600)
	return w
}

// commit pushes a revision whose server and worker run img, web in webMode.
func (w *world) commit(msg string, img testenv.AppImage, webMode string) string {
	return w.repo.CommitFiles(w.t, msg, map[string]string{"envs/" + w.env + "/compose.yaml": w.compose(img, webMode)})
}

// compose is the env of commit: a migration, a worker and a server
// behind nginx.
func (w *world) compose(img testenv.AppImage, webMode string) string {
	return fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit}
    x-berth: {role: migrate}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000"}
  web:
    image: %[1]s
    environment: {APP_MODE: %[2]s}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app, file: %[3]s}
`, img.Ref(), webMode, w.lbFile)
}

// cli runs a berth command with the agent config and decodes its --json
// output into v.
func (w *world) cli(v any, args ...string) {
	w.t.Helper()
	cmd := exec.Command(w.bin, append(args, "--config", w.config, "--json")...)
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("berth %v: %v\n%s", args, err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		w.t.Fatalf("berth %v: %v\n%s", args, err, out)
	}
}

// once runs `berth run --once` and returns its exit code and stderr.
func (w *world) once() (int, string) {
	cmd := exec.Command(w.bin, "run", "--once", "--config", w.config)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	return code, stderr.String()
}

func (w *world) serving() string { return version(w.nginx.URL() + "/") }

// version is the first word of what url answers ("version=v2"), or the
// error.
func version(url string) string {
	v, _, _ := strings.Cut(testenv.Answer(url), " ")
	return v
}

// containers lists "service@commit[:12]" of running containers.
func (w *world) containers() []string {
	ms, err := engine.New(w.d.Client, nil).List(context.Background(), w.env)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s@%.12s:%s", m.Service, m.Revision, m.State))
	}
	slices.Sort(out)
	return out
}

func (w *world) stateFile() map[string]any {
	b, err := os.ReadFile(filepath.Join(w.state, "state.json"))
	if err != nil {
		w.t.Fatal(err)
	}
	var s map[string]any
	json.Unmarshal(b, &s)
	return s
}

func TestE2E_PromoteByCommitAndRefuseBadRevisions(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	for _, img := range []testenv.AppImage{v1, v2} {
		w.d.CleanupImage(img.Ref())
	}

	w.commit("v1", v1, "serve")
	if code, out := w.once(); code != 0 || w.serving() != "version=v1" {
		t.Fatalf("v1: exit %d, serving %q\n%s", code, w.serving(), out)
	}
	c2 := w.commit("v2", v2, "serve")
	if code, out := w.once(); code != 0 || w.serving() != "version=v2" {
		t.Fatalf("v2: exit %d, serving %q\n%s", code, w.serving(), out)
	}
	want := []string{"web@" + c2[:12] + ":running", "worker@" + c2[:12] + ":running"}
	if got := w.containers(); !slices.Equal(got, want) {
		t.Fatalf("containers %v, want %v", got, want)
	}
	var status struct {
		Live       struct{ Commit string }
		Containers []struct{ Service, Health string }
	}
	w.cli(&status, "status")
	if status.Live.Commit != c2 || len(status.Containers) != 2 {
		t.Fatalf("berth status: %+v", status)
	}

	t.Run("invalid config is refused", func(t *testing.T) {
		bad := w.repo.CommitFiles(t, "tag instead of digest", map[string]string{"envs/" + w.env + "/compose.override.yaml": "services:\n  web: {image: 'r/app:latest'}\n"})
		code, out := w.once()
		if code != 1 { // a verdict (docs/operations.md, exit codes)
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
		failed, _ := w.stateFile()["failed"].(map[string]any)
		if failed["commit"] != bad || !strings.Contains(fmt.Sprint(failed["reason"]), "compose.override.yaml:web:image: image \"r/app:latest\" is not pinned by digest") {
			t.Fatalf("failed = %v", failed)
		}
		if w.serving() != "version=v2" || !slices.Equal(w.containers(), want) {
			t.Fatalf("host changed: %q %v", w.serving(), w.containers())
		}
		w.repo.CommitFiles(t, "revert", map[string]string{"envs/" + w.env + "/compose.override.yaml": ""})
	})
	t.Run("a server that dies before it is healthy is rolled back and not retried", func(t *testing.T) {
		// It exits at once: a verdict without waiting out the health
		// timeout, which is long for a loaded machine (reconcile's tests
		// cover a server that stays unhealthy).
		bad := w.commit("v3 dies on start", v2, "crash")
		code, out := w.once()
		if code != 1 {
			t.Fatalf("exit %d, want 1 (a verdict)\n%s", code, out)
		}
		failed, _ := w.stateFile()["failed"].(map[string]any)
		if failed["commit"] != bad || !strings.Contains(fmt.Sprint(failed["reason"]), "servers: service web: container") {
			t.Fatalf("failed = %v\n%s", failed, out)
		}
		if w.serving() != "version=v2" {
			t.Fatalf("serving %q", w.serving())
		}
		code, out = w.once()
		if strings.Contains(out, "container started") {
			t.Fatalf("the failed revision was retried:\n%s", out)
		}
		if code != 1 { // the head is still refused: not live
			t.Fatalf("a pass that keeps v2 while the head is refused: exit %d, want 1\n%s", code, out)
		}
		var history []struct{ Commit, Result, Reason string }
		w.cli(&history, "history")
		// Newest first: the pass that kept v2 (nothing to do), the
		// revision whose server died, the invalid config (a refusal is a pass
		// like any other), then the two deploys.
		if len(history) != 5 || history[0].Result != "unchanged" || history[1].Commit != bad || history[1].Result != "failed" ||
			history[2].Result != "failed" || history[3].Result != "succeeded" {
			t.Fatalf("berth history: %+v", history)
		}
	})
	t.Run("rollback holds the previous revision until a new commit", func(t *testing.T) {
		out, err := exec.Command(w.bin, "rollback", "--config", w.config).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "rollback to") {
			t.Fatalf("berth rollback: %v\n%s", err, out)
		}
		if code, log := w.once(); code != 0 || w.serving() != "version=v1" {
			t.Fatalf("after rollback: exit %d, serving %q\n%s", code, w.serving(), log)
		}
		if code, _ := w.once(); code != 0 || w.serving() != "version=v1" {
			t.Fatalf("the hold did not last: serving %q", w.serving())
		}
		w.commit("v2 again", v2, "serve")
		if code, log := w.once(); code != 0 || w.serving() != "version=v2" {
			t.Fatalf("a new commit did not end the hold: exit %d, serving %q\n%s", code, w.serving(), log)
		}
	})
}

// daemon runs `berth run` and lets the test kill it when a log line
// contains a marker.
type daemon struct {
	cmd   *exec.Cmd
	lines chan string

	mu   sync.Mutex
	last []string // the last lines it logged, for a failure's message
}

// tail is the last lines above debug the agent logged, for a test's
// failure message.
func (d *daemon) tail() string {
	if d == nil {
		return "(no daemon)"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, l := range d.last {
		if !strings.Contains(l, `"@level":"debug"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out[max(0, len(out)-40):], "\n")
}

func (w *world) start() *daemon {
	cmd := exec.Command(w.bin, "run", "--config", w.config, "--log-level", "debug")
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	d := &daemon{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			d.mu.Lock()
			d.last = append(d.last, s.Text())
			if len(d.last) > 400 {
				d.last = d.last[len(d.last)-400:]
			}
			d.mu.Unlock()
			select {
			case d.lines <- s.Text():
			default:
			}
		}
	}()
	go func() { cmd.Wait(); pw.Close() }()
	w.t.Cleanup(func() { cmd.Process.Kill() })
	return d
}

// patience bounds a wait for a state the agent reaches by itself (a
// deploy, a convergence, a record): on a 2-core machine running the whole
// suite at a load of 25–45 a deploy has taken over a minute. It is a
// bound on failure, never a measure: timings are benchmarks.
const patience = 3 * time.Minute

// waitFor returns once a log line contains every one of markers.
func (d *daemon) waitFor(t testing.TB, markers ...string) {
	t.Helper()
	timeout := time.After(patience)
	var seen []string
	for {
		select {
		case l := <-d.lines:
			if !slices.ContainsFunc(markers, func(m string) bool { return !strings.Contains(l, m) }) {
				return
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no log line with %q within %s; the last lines:\n%s", markers, patience, strings.Join(seen[max(0, len(seen)-15):], "\n"))
		}
	}
}

func (d *daemon) kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.cmd.Process.Wait()
}
