package testenv_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"berth.dev/berth/internal/testenv"
)

func pull(t *testing.T, d *testenv.DockerEnv, ref string) {
	t.Helper()
	d.CleanupImage(ref)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := d.Client.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	defer rc.Close()
	out, _ := io.ReadAll(rc)
	if strings.Contains(string(out), `"error"`) {
		t.Fatalf("pull %s: %s", ref, out)
	}
}

// run creates and starts a labelled container from ref with env, publishing
// the app port on a random loopback port.
func run(t *testing.T, d *testenv.DockerEnv, ref string, env ...string) string {
	t.Helper()
	ctx := context.Background()
	resp, err := d.Client.ContainerCreate(ctx,
		&container.Config{Image: ref, Env: env, Labels: d.Labels(), ExposedPorts: nat.PortSet{"8080/tcp": {}}},
		&container.HostConfig{PortBindings: nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: "0"}}}},
		nil, nil, "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := d.Client.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start: %v", err)
	}
	return resp.ID
}

// waitHealth polls the container's health status until it is want, within a
// bound: a HEALTHCHECK that can never pass must not hang the test. Turning
// unhealthy takes three failed checks 4 s apart, each an exec that a loaded
// engine makes slower: the bound is for failure only, so it is generous.
func waitHealth(t *testing.T, d *testenv.DockerEnv, id, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ins, err := d.Client.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ins.State.Health != nil && ins.State.Health.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: health %+v, want %s", id[:12], ins.State.Health, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestDocker_PushRemovePullByDigestAndServe(t *testing.T) {
	t.Parallel()
	d := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	// A version of its own: another test's image with the same digest in
	// the engine would turn the second pull into a no-op.
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "pull-" + d.RunID})
	ref := img.Ref()
	ctx := context.Background()

	pull(t, d, ref)
	ins, err := d.Client.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ins.RepoDigests, ref) {
		t.Fatalf("RepoDigests %v lack %s", ins.RepoDigests, ref)
	}
	if _, err := d.Client.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Client.ImageInspect(ctx, ref); err == nil {
		t.Fatalf("image %s still present after remove", ref)
	}
	reg.ResetRequests()
	pull(t, d, ref)
	blobGets := 0
	for _, r := range reg.Requests() {
		if strings.HasPrefix(r, "GET /v2/"+testenv.AppRepo+"/blobs/sha256:") {
			blobGets++
		}
	}
	if blobGets == 0 {
		t.Fatalf("second pull fetched no blob from the registry; requests: %v", reg.Requests())
	}
	id := run(t, d, ref)
	waitHealth(t, d, id, "healthy")
	c, err := d.Client.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	port := c.NetworkSettings.Ports["8080/tcp"][0].HostPort
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%s/", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "version=" + img.Version + " "; !strings.HasPrefix(string(body), want) {
		t.Fatalf("GET / = %q, want %q", body, want)
	}
}

func TestImages_ModesOfTheTestApp(t *testing.T) {
	t.Parallel()
	d := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "modes"})
	pull(t, d, img.Ref())

	t.Run("exit code and env names without values", func(t *testing.T) {
		const secret = "s3cr3t-value-never-printed"
		id := run(t, d, img.Ref(), "APP_MODE=exit", "APP_EXIT_CODE=7", "APP_MARKER=berth-marker", "APP_PRINT_ENV=DB_PASSWORD,MISSING", "DB_PASSWORD="+secret)
		code := waitExit(t, d, id)
		if code != 7 {
			t.Fatalf("exit code %d, want 7", code)
		}
		logs := containerLogs(t, d, id)
		for _, want := range []string{"berth-marker", "testapp env DB_PASSWORD set sha256=", "testapp env MISSING unset"} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %q:\n%s", want, logs)
			}
		}
		if strings.Contains(logs, secret) {
			t.Errorf("logs reveal the value of DB_PASSWORD:\n%s", logs)
		}
	})
	t.Run("crash on start", func(t *testing.T) {
		id := run(t, d, img.Ref(), "APP_MODE=crash")
		if code := waitExit(t, d, id); code != 3 {
			t.Fatalf("exit code %d, want 3", code)
		}
	})
	t.Run("never healthy", func(t *testing.T) {
		id := run(t, d, img.Ref(), "APP_MODE=unhealthy")
		waitHealth(t, d, id, "unhealthy")
	})
	t.Run("healthy after a delay", func(t *testing.T) {
		id := run(t, d, img.Ref(), "APP_HEALTHY_AFTER=3s")
		start := time.Now()
		waitHealth(t, d, id, "healthy")
		if since := time.Since(start); since < 2*time.Second {
			t.Fatalf("healthy after %s, want ≥ 3s after start", since)
		}
	})
}

func waitExit(t *testing.T, d *testenv.DockerEnv, id string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	statusCh, errCh := d.Client.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case st := <-statusCh:
		return st.StatusCode
	case err := <-errCh:
		t.Fatalf("wait %s: %v", id[:12], err)
	}
	return -1
}

func containerLogs(t *testing.T, d *testenv.DockerEnv, id string) string {
	t.Helper()
	rc, err := d.Client.ContainerLogs(context.Background(), id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// A private engine publishes ports from a block of its own, below the
// kernel's range for outgoing connections, where no other engine of the
// host counts from: after a restart too, when its layers are mounted
// where its containerd looks for them (the same mount namespace).
func TestPrivateDocker_PublishesFromItsOwnPortBlock(t *testing.T) {
	t.Parallel()
	pd := testenv.StartPrivateDocker(t, testenv.PrivateDockerOptions{LiveRestore: true})
	other := testenv.StartPrivateDocker(t, testenv.PrivateDockerOptions{})
	// Below the host's own range (read outside the engines' namespaces),
	// which outgoing connections and the shared engine use.
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	var hostLow int
	fmt.Sscan(string(b), &hostLow)
	if pd.Ports[0] < 26000 || pd.Ports[1] >= hostLow || pd.Ports == other.Ports {
		t.Fatalf("port blocks %v and %v; the host's range starts at %d", pd.Ports, other.Ports, hostLow)
	}
	reg := testenv.StartRegistry(t)
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "v1"})
	d := &testenv.DockerEnv{Client: pd.Client, RunID: "ports"}
	pull(t, d, img.Ref())
	published := func(id string) int {
		t.Helper()
		ins, err := pd.Client.ContainerInspect(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		b := ins.NetworkSettings.Ports["8080/tcp"]
		if len(b) != 1 {
			t.Fatalf("published: %+v", ins.NetworkSettings.Ports)
		}
		port, _ := strconv.Atoi(b[0].HostPort)
		if port < pd.Ports[0] || port > pd.Ports[1] {
			t.Fatalf("published on %d, outside the engine's block %v", port, pd.Ports)
		}
		return port
	}
	first := run(t, d, img.Ref())
	published(first)
	pd.Restart()
	second := run(t, d, img.Ref())
	port := published(second)
	waitHealth(t, d, second, "healthy")
	resp, err := (&http.Client{Timeout: time.Minute}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	published(first) // kept across the restart (live-restore)
}
