package reconcile

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/lb"
	"berth.dev/berth/migrate"
)

// host is one test host: a real engine, registry, nginx, and berth's
// adapters wired into a Deployer, for environment name.
type host struct {
	t        testing.TB
	name     string
	d        *testenv.DockerEnv
	reg      *testenv.Registry
	nginx    *testenv.Nginx
	lbFile   string
	engine   *engine.Engine
	deployer *Deployer
}

func newHost(t testing.TB) *host {
	d := testenv.Docker(t)
	h := &host{t: t, d: d, name: "t" + d.RunID, reg: testenv.StartRegistry(t)}
	d.CleanupLabel(t, engine.LabelEnv, h.name)
	d.CleanupLabel(t, "com.docker.compose.project", h.name)
	// Before the first deploy the operator's upstream points nowhere.
	h.nginx, h.lbFile = testenv.StartProxy(t, "app", "127.0.0.1:1")
	h.engine = engine.New(d.Client, nil)
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
		// A test of a server that never gets healthy sets neverHealthy.
		HealthTimeout: testenv.HealthTimeout,
		Settle:        time.Second,
	}
	return h
}

// neverHealthy is the health gate's timeout for a revision that never
// passes it: it fails after this long anyway. Every container of the
// deploy gets that timeout, so a test using it keeps the revision's
// healthy services as they are (rev.worker is the live image): on a
// loaded engine a healthy worker has been "starting" for 20 s and more.
const neverHealthy = 20 * time.Second

// rev describes one revision of the test environment.
type rev struct {
	image       testenv.AppImage
	worker      testenv.AppImage // the worker's image if not image
	migrateCode string           // APP_EXIT_CODE of the migration
	webMode     string
	workerMode  string
}

func (h *host) env(r rev) *envs.Env {
	h.t.Helper()
	if r.migrateCode == "" {
		r.migrateCode = "0"
	}
	if r.webMode == "" {
		r.webMode = "serve"
	}
	if r.workerMode == "" {
		r.workerMode = "serve"
	}
	if r.worker.Digest == "" {
		r.worker = r.image
	}
	dir := h.t.TempDir()
	os.MkdirAll(filepath.Join(dir, "envs", h.name), 0o755)
	compose := fmt.Sprintf(`
services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit, APP_EXIT_CODE: "%[2]s", APP_MARKER: migrating}
    x-berth: {role: migrate}
  worker:
    image: %[6]s
    environment: {APP_MODE: %[4]s, APP_PORT: "9000"}
  web:
    image: %[1]s
    environment: {APP_MODE: %[3]s}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app, file: %[5]s}
`, r.image.Ref(), r.migrateCode, r.webMode, r.workerMode, h.lbFile, r.worker.Ref())
	os.WriteFile(filepath.Join(dir, "envs", h.name, "compose.yaml"), []byte(compose), 0o644)
	env, err := envs.Load(context.Background(), dir, h.name, envs.Options{Policy: envs.Policy{AllowedBindMounts: nil}, LB: envs.LBOptions{ConfDir: filepath.Dir(h.lbFile)}})
	if err != nil {
		h.t.Fatal(err)
	}
	return env
}

func (h *host) deploy(r rev, revision string) (*Report, error) {
	h.t.Helper()
	return h.deployer.Deploy(h.t.Context(), Input{Env: h.env(r), Revision: revision})
}

// serving returns what nginx answers on /.
func (h *host) serving() string {
	h.t.Helper()
	resp, err := http.Get(h.nginx.URL() + "/")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v, _, _ := strings.Cut(string(b), " ")
	return v
}

// containers lists "service@revision" of the env's containers.
func (h *host) containers() []string {
	h.t.Helper()
	ms, err := h.engine.List(h.t.Context(), h.name)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Service+"@"+m.Revision+":"+m.State)
	}
	slices.Sort(out)
	return out
}

func TestDeploy_V1V2AndEveryFailureKeepsTheHostOnTheLastGoodRevision(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	v1 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v2"})
	v3 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v3"})
	for _, img := range []testenv.AppImage{v1, v2, v3} {
		h.d.CleanupImage(img.Ref())
	}

	res, err := h.deploy(rev{image: v1}, "r1")
	if err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	if h.serving() != "version=v1" || len(res.OneShots) != 1 || res.OneShots[0].ExitCode != 0 {
		t.Fatalf("after v1: nginx serves %q, one-shots %+v", h.serving(), res.OneShots)
	}

	h.reg.ResetRequests()
	res, err = h.deploy(rev{image: v1}, "r1")
	if err != nil || res.Changed {
		t.Fatalf("redeploy of v1: changed %v, %v", res.Changed, err)
	}
	if r := h.reg.Requests(); len(r) != 0 {
		t.Fatalf("a no-change redeploy made registry requests: %v", r)
	}

	res, err = h.deploy(rev{image: v2}, "r2")
	if err != nil {
		t.Fatalf("deploy v2: %v", err)
	}
	want := []string{"web@r2:running", "worker@r2:running"}
	if h.serving() != "version=v2" || !slices.Equal(h.containers(), want) {
		t.Fatalf("after v2: nginx serves %q, containers %v", h.serving(), h.containers())
	}
	for _, a := range res.Actions {
		if a.Service == "web" && !strings.Contains(a.Reason, "image digest changed "+v1.Digest[:19]) {
			t.Errorf("web's reason %q does not name the digest change", a.Reason)
		}
	}

	unknown := v3
	unknown.Digest = "sha256:" + strings.Repeat("0", 64)
	failures := []struct {
		name      string
		rev       rev
		before    func()
		after     func()
		wantErr   string
		wantClass failure.Class // Unclassed: not checked here
		wantDone  bool          // something changed before the failure
	}{
		{name: "migration exits 1", rev: rev{image: v3, migrateCode: "1"}, wantErr: "cli: migrate migrate: exited with code 1", wantClass: failure.Verdict, wantDone: true},
		{name: "server never healthy", rev: rev{image: v3, worker: v2, webMode: "unhealthy"}, wantErr: "servers: service web: container", wantClass: failure.Verdict, wantDone: true},
		{name: "server crashes on start", rev: rev{image: v3, webMode: "crash"}, wantErr: "exited with code 3 before it was healthy", wantClass: failure.Verdict, wantDone: true},
		{name: "worker never healthy", rev: rev{image: v3, workerMode: "unhealthy"}, wantErr: "workers: service worker: container", wantClass: failure.Verdict, wantDone: true},
		{
			name:      "registry unreachable",
			rev:       rev{image: testenv.AppImage{Repo: "127.0.0.1:1/berth/testapp", Digest: v3.Digest}},
			wantErr:   "prepare: service ",
			wantClass: failure.Outage,
		},
		{name: "unknown digest", rev: rev{image: unknown}, wantErr: "manifest unknown", wantClass: failure.Verdict},
		{
			name: "nginx config test fails",
			rev:  rev{image: v3},
			before: func() {
				os.WriteFile(filepath.Join(h.nginx.ConfD, "broken.conf"), []byte("this is not nginx config\n"), 0o644)
			},
			after:     func() { os.Remove(filepath.Join(h.nginx.ConfD, "broken.conf")) },
			wantErr:   "nginx rejected " + h.lbFile,
			wantClass: failure.Verdict,
			wantDone:  true,
		},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			if tc.after != nil {
				defer tc.after()
			}
			if tc.rev.webMode == "unhealthy" || tc.rev.workerMode == "unhealthy" {
				h.deployer.HealthTimeout = neverHealthy
				defer func() { h.deployer.HealthTimeout = testenv.HealthTimeout }()
			}
			res, err := h.deploy(tc.rev, "r3")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("deploy: %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.wantClass != failure.Unclassed && (failure.Of(err) != tc.wantClass || res.Class != tc.wantClass) {
				t.Errorf("class %s (result %s), want %s", failure.Of(err), res.Class, tc.wantClass)
			}
			if (len(res.Done) > 0) != tc.wantDone || len(res.Undone) < len(res.Done)-countRuns(res.Done) {
				t.Errorf("done %v, undone %v: want every change but one-shots undone", res.Done, res.Undone)
			}
			if got := h.serving(); got != "version=v2" {
				t.Errorf("nginx serves %q after the failure, want v2", got)
			}
			if got := h.containers(); !slices.Equal(got, want) {
				t.Errorf("containers after the failure %v, want %v", got, want)
			}
		})
	}

	if _, err := h.deploy(rev{image: v3}, "r3"); err != nil {
		t.Fatalf("deploy of a good v3 after the failures: %v", err)
	}
	if h.serving() != "version=v3" {
		t.Fatalf("after v3: %q", h.serving())
	}
}

// countRuns counts the one-shots in done (a rollback never undoes them).
func countRuns(done []string) int {
	n := 0
	for _, d := range done {
		if strings.HasPrefix(d, "run ") {
			n++
		}
	}
	return n
}

// An agent killed after the new server passed its health gate but before
// the switch leaves two servers and the balancer on the old one. The next
// pass keeps the new server, points the balancer at it and retires the old.
func TestDeploy_ConvergesAfterAnInterruptedCutover(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	v1 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v2"})
	h.d.CleanupImage(v1.Ref())
	h.d.CleanupImage(v2.Ref())
	if _, err := h.deploy(rev{image: v1}, "r1"); err != nil {
		t.Fatal(err)
	}
	// What the killed agent did of r2: worker and server started, healthy.
	env2 := h.env(rev{image: v2})
	ctx := t.Context()
	for _, name := range []string{"worker", "web"} {
		svc := *env2.Service(name)
		if _, err := h.engine.EnsureImage(ctx, svc.Config.Image); err != nil {
			t.Fatal(err)
		}
		req, err := engine.CreateRequest(env2.Project, svc, engine.Placement{
			Project: h.name, Env: h.name, Revision: "r2", ConfigHash: svc.Hash, Slot: 2, PublishLoopback: name == "web",
		})
		if err != nil {
			t.Fatal(err)
		}
		id, err := h.engine.Create(ctx, req)
		if err == nil {
			err = h.engine.Start(ctx, id)
		}
		if err == nil {
			err = h.engine.WaitHealthy(ctx, id, 30*time.Second, time.Second)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := h.serving(); got != "version=v1" {
		t.Fatalf("before the restart pass nginx serves %q", got)
	}
	res, err := h.deployer.Deploy(ctx, Input{Env: env2, Revision: "r2"})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.serving(); got != "version=v2" {
		t.Fatalf("after the restart pass nginx serves %q, want v2", got)
	}
	if got, want := h.containers(), []string{"web@r2:running", "worker@r2:running"}; !slices.Equal(got, want) {
		t.Fatalf("containers %v, want %v", got, want)
	}
	for _, a := range res.Actions {
		if (a.Service == "web" || a.Service == "worker") && a.Kind != Keep {
			t.Errorf("%s: %s, want keep (its r2 container was healthy)", a.Service, a)
		}
	}
}

// A server image without HEALTHCHECK is gated on its port accepting
// connections: one that never listens is never switched to.
func TestDeploy_ServerWithoutHealthcheckIsGatedOnItsPort(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	v1 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v1", NoHealthcheck: true})
	v2 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v2", NoHealthcheck: true})
	h.d.CleanupImage(v1.Ref())
	h.d.CleanupImage(v2.Ref())
	if _, err := h.deploy(rev{image: v1}, "r1"); err != nil {
		t.Fatal(err)
	}
	if got := h.serving(); got != "version=v1" {
		t.Fatalf("serving %q", got)
	}
	// v2's server runs but never listens.
	env := h.env(rev{image: v2, worker: v1, webMode: "idle"})
	h.deployer.HealthTimeout = neverHealthy
	_, err := h.deployer.Deploy(t.Context(), Input{Env: env, Revision: "r2"})
	if err == nil || !strings.Contains(err.Error(), "no HEALTHCHECK, and http://127.0.0.1:") {
		t.Fatalf("deploy of a server that never listens: %v", err)
	}
	if got := h.serving(); got != "version=v1" {
		t.Fatalf("after the failed gate nginx serves %q", got)
	}
}
