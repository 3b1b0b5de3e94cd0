package testenv

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
)

func TestPrivateDocker_PausesResumesAndRestartsWithoutTheSharedEngine(t *testing.T) {
	t.Parallel()
	shared := Docker(t)
	before, err := shared.Client.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, docker0 := net.InterfaceByName("docker0")
	p := StartPrivateDocker(t, PrivateDockerOptions{})
	t.Cleanup(func() {
		// Checked after the private engine's own cleanup (cleanups run
		// last in, first out): the shared engine's bridge is still there.
		if _, err := net.InterfaceByName("docker0"); docker0 == nil && err != nil {
			t.Errorf("the shared engine's docker0 is gone: %v", err)
		}
	})
	ping := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		_, err := p.Client.Ping(ctx)
		return err
	}
	if err := ping(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	info, err := p.Client.Info(t.Context())
	if err != nil || info.DockerRootDir == before.DockerRootDir {
		t.Fatalf("private engine's root %q, shared %q: %v", info.DockerRootDir, before.DockerRootDir, err)
	}
	// Compose networks work without a default bridge.
	created, err := p.Client.NetworkCreate(t.Context(), "berth-private-net", network.CreateOptions{Driver: "bridge"})
	if err != nil {
		t.Fatal(err)
	}
	// A subnet of its own pool, 10.N.0.0/16: never one the shared engine
	// may take at the same moment from Docker's default pools.
	if n, err := p.Client.NetworkInspect(t.Context(), created.ID, network.InspectOptions{}); err != nil || len(n.IPAM.Config) != 1 || !strings.HasPrefix(n.IPAM.Config[0].Subnet, p.net) {
		t.Fatalf("the private engine's network got %+v (%v)", n.IPAM.Config, err)
	}
	p.Pause()
	start := time.Now()
	if err := ping(time.Second); err == nil {
		t.Fatal("a paused dockerd answered")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the ping's deadline did not hold: %s", took)
	}
	p.Resume()
	if err := ping(5 * time.Second); err != nil {
		t.Fatalf("after SIGCONT: %v", err)
	}
	p.Restart()
	if err := ping(5 * time.Second); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	// The shared engine saw none of it.
	if _, err := shared.Client.Ping(t.Context()); err != nil {
		t.Fatalf("the shared engine: %v", err)
	}
	if _, err := shared.Client.NetworkInspect(t.Context(), "berth-private-net", network.InspectOptions{}); err == nil {
		t.Fatal("the private engine's network is in the shared engine")
	}
}
