package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// TestLabel is the label key every container, network and volume a test
// creates carries; its value is unique to the test.
const TestLabel = "berth.test"

// DockerEnv is a client to the real engine, scoped to one test.
type DockerEnv struct {
	Client *client.Client
	// RunID is the value of TestLabel for this test's objects.
	RunID string

	mu     sync.Mutex
	images []string
}

// Docker returns a client to the engine named by DOCKER_HOST (or the default
// socket), negotiated down to the engine's API version (Debian's engine
// speaks 1.41). Objects labelled with d.Labels() are removed when the test
// ends.
func Docker(t testing.TB) *DockerEnv {
	t.Helper()
	shortSkip(t, "Docker")
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		unavailable(t, "docker", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		unavailable(t, "docker", err)
	}
	d := &DockerEnv{Client: c, RunID: randomID()}
	t.Cleanup(func() { c.Close() })
	// Cleanups run last-in first-out: images go after the containers that
	// use them, or the engine would only untag them.
	t.Cleanup(func() { d.removeImages(t) })
	d.CleanupLabel(t, TestLabel, d.RunID)
	return d
}

// CleanupImage removes image ref when the test ends, after its containers.
func (d *DockerEnv) CleanupImage(ref string) {
	d.mu.Lock()
	d.images = append(d.images, ref)
	d.mu.Unlock()
}

func (d *DockerEnv) removeImages(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ref := range d.images {
		_, err := d.Client.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !client.IsErrNotFound(err) {
			t.Errorf("testenv: remove image %s: %v", ref, err)
		}
	}
}

// Labels returns the test label to put on every object the test creates.
func (d *DockerEnv) Labels() map[string]string {
	return map[string]string{TestLabel: d.RunID}
}

// CleanupLabel removes, when the test ends, every container, network and
// volume carrying label key=value: tests that let berth create containers
// use it with the labels berth sets (e.g. berth.env=<unique env name>).
func (d *DockerEnv) CleanupLabel(t testing.TB, key, value string) {
	t.Helper()
	t.Cleanup(func() {
		// A loaded engine has taken over a minute to remove a test's
		// containers: the bound only catches one that hangs.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		f := filters.NewArgs(filters.Arg("label", key+"="+value))
		cs, err := d.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		if err != nil {
			t.Errorf("testenv: list containers for cleanup: %v", err)
			return
		}
		for _, c := range cs {
			err := d.Client.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			if err != nil && !client.IsErrNotFound(err) && !strings.Contains(err.Error(), "is already in progress") {
				t.Errorf("testenv: remove container %s: %v", c.ID[:12], err)
			}
		}
		nets, err := d.Client.NetworkList(ctx, network.ListOptions{Filters: f})
		if err != nil {
			t.Errorf("testenv: list networks for cleanup: %v", err)
		}
		for _, n := range nets {
			if err := d.removeNetwork(ctx, n.ID); err != nil && !client.IsErrNotFound(err) {
				t.Errorf("testenv: remove network %s: %v", n.Name, err)
			}
		}
		vols, err := d.Client.VolumeList(ctx, volume.ListOptions{Filters: f})
		if err != nil {
			t.Errorf("testenv: list volumes for cleanup: %v", err)
			return
		}
		for _, v := range vols.Volumes {
			if err := d.Client.VolumeRemove(ctx, v.Name, true); err != nil && !client.IsErrNotFound(err) {
				t.Errorf("testenv: remove volume %s: %v", v.Name, err)
			}
		}
	})
}

// removeNetwork removes a network, first disconnecting what the engine
// still lists on it: a loaded engine has kept a removed container's
// endpoint a while ("has active endpoints").
func (d *DockerEnv) removeNetwork(ctx context.Context, id string) error {
	err := d.Client.NetworkRemove(ctx, id)
	for try := 0; err != nil && strings.Contains(err.Error(), "active endpoints") && try < 10; try++ {
		if n, ierr := d.Client.NetworkInspect(ctx, id, network.InspectOptions{}); ierr == nil {
			for cid := range n.Containers {
				_ = d.Client.NetworkDisconnect(ctx, id, cid, true)
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
		err = d.Client.NetworkRemove(ctx, id)
	}
	return err
}

func randomID() string {
	b := make([]byte, 6)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b)
}
