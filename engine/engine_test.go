package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// deployable loads an env whose one server runs img, named uniquely so the
// test's cleanup finds everything berth created by its env label.
func deployable(t *testing.T, d *testenv.DockerEnv, img testenv.AppImage, extra string) (*envs.Env, Placement) {
	t.Helper()
	name := "t" + d.RunID
	d.CleanupLabel(t, LabelEnv, name)
	d.CleanupLabel(t, composeProject, name)
	env := loadEnv(t, fmt.Sprintf(`
services:
  web:
    image: %s
%s    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app, file: /etc/nginx/conf.d/app.conf}
`, img.Ref(), extra))
	env.Project.Name = name
	for k, n := range env.Project.Networks {
		n.Name = name + "_" + k
		env.Project.Networks[k] = n
	}
	return env, Placement{Project: name, Env: name, Revision: "r1", ConfigHash: env.Services[0].Hash, Slot: 1, PublishLoopback: true}
}

// pushedApp gives a test the engine, a registry, an Engine and a test image
// of its own in that registry (removed from the engine when the test ends).
func pushedApp(t *testing.T, version string) (*testenv.DockerEnv, *testenv.Registry, *Engine, testenv.AppImage) {
	t.Helper()
	d := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: version + "-" + d.RunID})
	d.CleanupImage(img.Ref())
	return d, reg, patientEngine(d), img
}

// patientEngine is an Engine whose calls may take as long as a loaded
// engine needs (a start has taken over 30 s with the whole suite on 2
// cores): the tests that use it check what the calls do, not their
// deadlines, which the hung-engine test checks with its own.
func patientEngine(d *testenv.DockerEnv) *Engine {
	e := New(d.Client, nil)
	e.Timeouts.Call = 2 * time.Minute
	return e
}

// pulledApp is pushedApp with the image already pulled.
func pulledApp(t *testing.T, version string) (*testenv.DockerEnv, *Engine, testenv.AppImage) {
	t.Helper()
	d, _, e, img := pushedApp(t, version)
	if _, err := e.EnsureImage(t.Context(), img.Ref()); err != nil {
		t.Fatal(err)
	}
	return d, e, img
}

// launch creates and starts the env's one service as placed.
func launch(t *testing.T, e *Engine, env *envs.Env, pl Placement) string {
	t.Helper()
	ctx := t.Context()
	if err := e.EnsureProject(ctx, env.Project); err != nil {
		t.Fatal(err)
	}
	req, err := CreateRequest(env.Project, env.Services[0], pl)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEngine_PullsOnceThenNeverAgain(t *testing.T) {
	t.Parallel()
	_, reg, e, img := pushedApp(t, "once")

	reg.ResetRequests()
	pulled, err := e.EnsureImage(t.Context(), img.Ref())
	if err != nil || !pulled {
		t.Fatalf("first EnsureImage: pulled %v, %v", pulled, err)
	}
	if len(reg.Requests()) == 0 {
		t.Fatal("first EnsureImage made no registry request")
	}
	reg.ResetRequests()
	pulled, err = e.EnsureImage(t.Context(), img.Ref())
	if err != nil || pulled {
		t.Fatalf("second EnsureImage: pulled %v, %v", pulled, err)
	}
	if r := reg.Requests(); len(r) != 0 {
		t.Fatalf("redeploy of a present image made registry requests: %v", r)
	}
}

func TestEngine_PullFromAnUnreachableRegistryFails(t *testing.T) {
	d := testenv.Docker(t)
	e := patientEngine(d)
	ref := "127.0.0.1:1/berth/none@sha256:" + strings.Repeat("ab", 32)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := e.EnsureImage(ctx, ref); err == nil || !strings.Contains(err.Error(), "pull "+ref) || !failure.IsOutage(err) {
		t.Fatalf("EnsureImage from a closed port: %v (%s, want an outage)", err, failure.Of(err))
	}
}

func TestEngine_ServerContainerFromComposeServesAndIsHealthy(t *testing.T) {
	t.Parallel()
	d, _, e, img := pushedApp(t, "srv")
	env, pl := deployable(t, d, img, "    environment: {APP_MARKER: from-compose}\n")
	ctx := t.Context()

	if _, err := e.EnsureImage(ctx, img.Ref()); err != nil {
		t.Fatal(err)
	}
	id := launch(t, e, env, pl)
	if err := e.WaitHealthy(ctx, id, testenv.HealthTimeout, 0); err != nil {
		t.Fatal(err)
	}
	port, err := e.HostPort(ctx, id, "8080/tcp")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "version="+img.Version) {
		t.Fatalf("GET / = %q", body)
	}
	ins, err := d.Client.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ins.Name != "/"+pl.Project+"-web-1" || ins.Config.Labels[LabelConfigHash] != pl.ConfigHash || ins.Config.Labels[composeProject] != pl.Project {
		t.Fatalf("name %s labels %v", ins.Name, ins.Config.Labels)
	}
}

func TestEngine_WaitHealthyFailsForNeverHealthyAndCrashed(t *testing.T) {
	t.Parallel()
	d, e, img := pulledApp(t, "bad")
	ctx := t.Context()
	tests := []struct {
		name, env, want string
	}{
		{"never healthy", "    environment: {APP_MODE: unhealthy}\n", "not healthy after 4s (health "},
		{"crash on start", "    environment: {APP_MODE: crash}\n", "exited with code 3 before it was healthy"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, pl := deployable(t, d, img, tc.env)
			pl.Slot = i + 1
			id := launch(t, e, env, pl)
			err := e.WaitHealthy(ctx, id, 4*time.Second, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !failure.IsVerdict(err) {
				t.Fatalf("WaitHealthy: %v, want %q", err, tc.want)
			}
		})
	}
}

// oneShotRequest is the create request of a one-shot of the env's service.
func oneShotRequest(t *testing.T, e *Engine, d *testenv.DockerEnv, img testenv.AppImage, slot int, extra string) *Request {
	t.Helper()
	env, pl := deployable(t, d, img, extra)
	pl.Slot, pl.OneOff, pl.PublishLoopback = slot, true, false
	if err := e.EnsureProject(t.Context(), env.Project); err != nil {
		t.Fatal(err)
	}
	req, err := CreateRequest(env.Project, env.Services[0], pl)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestEngine_RunOnceExitCodesTimeoutStopAndCleanup(t *testing.T) {
	t.Parallel()
	d, e, img := pulledApp(t, "once")
	stopping := errors.New("the agent is stopping")
	tests := []struct {
		name     string
		env      string
		cancel   bool // ctx ends 1 s after the container started
		code     int
		timedOut bool // after a 3 s timeout; the others have a minute
		stopped  error
		output   string
	}{
		{"success", "    environment: {APP_MODE: exit, APP_MARKER: migrated}\n", false, 0, false, nil, "migrated"},
		{"failure", "    environment: {APP_MODE: exit, APP_EXIT_CODE: '7'}\n", false, 7, false, nil, "testapp exit code=7"},
		// Stopped gracefully: the stop signal reaches the app, which
		// says so, before the grace ends in SIGKILL.
		{"timeout", "    environment: {APP_MODE: idle}\n", false, -1, true, nil, "testapp idle stopped by signal"},
		{"ctx ends", "    environment: {APP_MODE: idle}\n", true, -1, false, stopping, "testapp idle stopped by signal"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := oneShotRequest(t, e, d, img, i+1, tc.env)
			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			started := ""
			timeout := time.Minute // exits long before, however busy Docker is
			if tc.timedOut {
				timeout = 3 * time.Second
			}
			res, err := e.RunOnce(ctx, req, OneShot{Timeout: timeout, Grace: 5 * time.Second, Started: func(id string) {
				started = id
				if tc.cancel {
					// Once the app had time to set up its signal handler
					// (as PID 1 it ignores SIGTERM until then).
					time.AfterFunc(time.Second, func() { cancel(stopping) })
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tc.code || res.TimedOut != tc.timedOut || res.Stopped != tc.stopped || !strings.Contains(string(res.Output), tc.output) || started == "" {
				t.Fatalf("result %+v (output %q)", res, res.Output)
			}
			// The duration only has to show the run was ended (the idle
			// app runs until stopped): 3 s of timeout and 5 s of grace
			// took 13.9 s of Docker calls on a machine at a load of 45.
			if !strings.Contains(string(res.Stdout), tc.output) || res.Duration <= 0 || res.Duration > time.Minute {
				t.Fatalf("stdout %q, duration %s", res.Stdout, res.Duration)
			}
			if _, err := d.Client.ContainerInspect(t.Context(), req.Name); err == nil {
				t.Fatalf("one-shot container %s left behind", req.Name)
			}
		})
	}
}

func TestEngine_RunOnceKeepsTheTailsAndNoPieceOfASecret(t *testing.T) {
	t.Parallel()
	d, e, img := pulledApp(t, "tail")
	secret := "s3cret-" + d.RunID + "-value"
	extra := "    environment: {APP_MODE: exit, APP_MARKER: 'token " + secret + " printed', APP_PRINT_ENV: HOME}\n"
	full, err := e.RunOnce(t.Context(), oneShotRequest(t, e, d, img, 1, extra), OneShot{Secrets: []string{secret}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(full.Output), secret) || !strings.Contains(string(full.Output), "token [redacted] printed") {
		t.Fatalf("whole output %q", full.Output)
	}
	// Keep a tail that begins in the middle of the secret.
	raw := strings.Replace(string(full.Stdout), "[redacted]", secret, 1)
	cut := len(raw) - (strings.Index(raw, secret) + len(secret)/2)
	res, err := e.RunOnce(t.Context(), oneShotRequest(t, e, d, img, 2, extra), OneShot{Secrets: []string{secret}, MaxOutput: cut})
	if err != nil {
		t.Fatal(err)
	}
	if res.StdoutDropped == 0 || len(res.Stdout) > cut {
		t.Fatalf("tail of %d bytes kept %d, dropped %d", cut, len(res.Stdout), res.StdoutDropped)
	}
	for _, piece := range []string{secret[len(secret)/2:], secret[len(secret)-6:], d.RunID} {
		if strings.Contains(string(res.Stdout), piece) || strings.Contains(string(res.Output), piece) {
			t.Fatalf("a piece of the secret (%q) is in the kept tail %q", piece, res.Stdout)
		}
	}
	if !strings.Contains(string(res.Stdout), "testapp exit code=0") {
		t.Fatalf("the tail lost the end of the output: %q", res.Stdout)
	}
}

func TestEngine_PruneImagesKeepsWhatIsKeptOrInUse(t *testing.T) {
	t.Parallel()
	d, e, inUse := pulledApp(t, "inuse")
	reg := testenv.StartRegistry(t)
	old := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "old-" + d.RunID})
	kept := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "kept-" + d.RunID})
	for _, img := range []testenv.AppImage{old, kept} {
		d.CleanupImage(img.Ref())
		if _, err := e.EnsureImage(t.Context(), img.Ref()); err != nil {
			t.Fatal(err)
		}
	}
	env, pl := deployable(t, d, inUse, "")
	launch(t, e, env, pl)

	removed, err := e.PruneImages(t.Context(), []string{kept.Ref()}, []string{old.Ref(), kept.Ref(), inUse.Ref(), "127.0.0.1:1/gone@sha256:" + strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{old.Ref()}) {
		t.Fatalf("removed %v, want only %s", removed, old.Ref())
	}
	for _, ref := range []string{kept.Ref(), inUse.Ref()} {
		if ok, _ := e.hasImage(t.Context(), ref); !ok {
			t.Errorf("%s was removed", ref)
		}
	}
}

func TestEngine_PullUsesDockerConfigCredentials(t *testing.T) {
	d := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "auth-" + d.RunID})
	d.CleanupImage(img.Ref())
	reg.RequireAuth("bot", "s3cret-pw")
	e := patientEngine(d)

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := e.EnsureImage(t.Context(), img.Ref()); err == nil {
		t.Fatal("pull from a private registry without credentials succeeded")
	}
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("bot:s3cret-pw"))
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+auth+`"}}}`), 0o600)
	t.Setenv("DOCKER_CONFIG", dir)
	if _, err := e.EnsureImage(t.Context(), img.Ref()); err != nil {
		t.Fatalf("pull with credentials from DOCKER_CONFIG: %v", err)
	}
}

func TestEngine_StalledPullIsAbandoned(t *testing.T) {
	t.Parallel()
	_, reg, e, img := pushedApp(t, "stall")
	e.PullStall = 2 * time.Second
	reg.Stall(t)
	start := time.Now()
	_, err := e.EnsureImage(t.Context(), img.Ref())
	if err == nil || !strings.Contains(err.Error(), "no progress for 2s") || !failure.IsOutage(err) {
		t.Fatalf("EnsureImage from a stalled registry: %v (%s, want an outage)", err, failure.Of(err))
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("gave up after %s", took)
	}
}

func TestEngine_SecretFilesReachATmpfsInTheContainerAndNoDisk(t *testing.T) {
	t.Parallel()
	d, e, img := pulledApp(t, "files")
	e.InitPath = testenv.BerthBinary(t)
	ctx := t.Context()
	env, pl := deployable(t, d, img, "    user: \"1000\"\n    environment: {APP_MODE: exit, APP_SLEEP: 3s, APP_PRINT_FILES: /run/secrets/db_password}\n")
	pl.OneOff, pl.PublishLoopback = true, false
	value := "s3cret-file-value-" + d.RunID
	pl.SecretFiles = []string{"db_password=" + value}
	id := launch(t, e, env, pl)
	defer e.Remove(context.Background(), id)
	code, err := e.WaitExit(ctx, id)
	out, errb, _, _ := e.Logs(ctx, id, 1<<20)
	sum := sha256.Sum256([]byte(value))
	want := "testapp file /run/secrets/db_password mode=400 sha256=" + hex.EncodeToString(sum[:8])
	if err != nil || code != 0 || !strings.Contains(string(out), want) {
		t.Fatalf("exit %d %v; want %q in output:\n%s%s", code, err, want, out, errb)
	}
	// Not in the container's config (docker inspect) ...
	info, err := d.Client.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(info); strings.Contains(string(b), value) {
		t.Error("the value is in docker inspect")
	}
	// ... nor anywhere under the engine's data root (container configs,
	// layers, logs), the container still there.
	di, err := d.Client.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(di.DockerRootDir, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || !de.Type().IsRegular() {
			return nil
		}
		if fi, err := de.Info(); err != nil || fi.Size() > 16<<20 {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(value)) {
			t.Errorf("the value is on disk in %s", p)
		}
		return nil
	})
}
