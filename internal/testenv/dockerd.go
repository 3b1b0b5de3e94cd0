package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
)

// PrivateDocker is a dockerd of the test's own, beside the shared engine,
// for tests that hang, kill or restart an engine: the shared one on
// /var/run/docker.sock is never touched. Everything it has is its own: data
// root, exec root, pid file, unix socket, containerd (started by dockerd,
// in its exec root, under its own namespaces), cgroup parent and default
// bridge. It writes no iptables rules, so it cannot fight the
// shared engine over NAT; Compose networks (user bridges) work, and ports
// published on 127.0.0.1 go through its userland proxy, on ports of a
// block of its own (dockerd_ports.go).
//
// Its networks take subnets from a pool of its own, 10.N.0.0/16 (N free on
// the host, picked under a host-wide lock), never from Docker's default
// pools: two engines picking from the same pools at the same moment gave
// two bridges one subnet, and a published port of the shared engine's
// container answered from a private engine's ("version=hung" from another
// test's app). Its default bridge is its own too, 10.N.200.1/24, made here
// and deleted when the test ends with the bridges of the networks it made.
//
// Never --bridge=none beside another engine: dockerd 20.10 then deletes
// the interface docker0, the shared engine's default bridge, at startup.
// It does so at a restart too when address pools are set and live-restore
// is not (moby's "clear stale bridge network" calls
// removeDefaultBridgeInterface), so such a restart drops the pool flag.
type PrivateDocker struct {
	Dir    string // everything it has lives here
	Host   string // "unix://DIR/docker.sock", for DOCKER_HOST or the client
	Client *client.Client
	// LiveRestore is whether containers survive a restart of the daemon.
	LiveRestore bool
	// Ports is the range its published ports come from (dockerd_ports.go).
	Ports [2]int

	t      testing.TB
	args   []string
	bridge string // its default bridge, made by StartPrivateDocker
	net    string // "10.N.": its bridge is 10.N.200.1/24

	networks []string  // ids of its networks, for their bridges
	holder   *exec.Cmd // made its mount namespace
	ns       *os.File  // the namespace (/proc/PID/ns/mnt of holder)
	portLock *os.File  // its claim on Ports
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	log      *os.File
}

// PrivateDockerOptions configure StartPrivateDocker.
type PrivateDockerOptions struct {
	LiveRestore bool
}

// StartPrivateDocker starts a private dockerd and waits until it answers.
// It needs root and Debian's docker.io (dockerd, containerd, runc). When
// the test ends, its containers are removed, the daemon and its containerd
// stopped, leftover mounts unmounted and its directory removed.
func StartPrivateDocker(t testing.TB, o PrivateDockerOptions) *PrivateDocker {
	t.Helper()
	shortSkip(t, "StartPrivateDocker")
	if os.Geteuid() != 0 {
		unavailable(t, "private dockerd", errors.New("starting a Docker engine needs root"))
	}
	if _, err := exec.LookPath("dockerd"); err != nil {
		unavailable(t, "private dockerd", err)
	}
	// Short: containerd's and the shims' unix sockets live under it, and
	// socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bd")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id := filepath.Base(dir)
	p := &PrivateDocker{Dir: dir, Host: "unix://" + filepath.Join(dir, "docker.sock"), LiveRestore: o.LiveRestore, t: t,
		bridge: "bt" + strings.TrimPrefix(id, "bd")}
	if len(p.bridge) > 15 { // IFNAMSIZ
		p.bridge = p.bridge[:15]
	}
	t.Cleanup(p.cleanup)
	if err := p.makeBridge(); err != nil {
		unavailable(t, "private dockerd", err)
	}
	p.args = []string{
		"--config-file", filepath.Join(dir, "daemon.json"), // not /etc/docker/daemon.json
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--host", p.Host,
		"--bridge", p.bridge, "--iptables=false", "--ip-masq=false",
		poolFlag, "base=" + p.net + "0.0/16,size=24",
		"--cgroup-parent", "/berth-test-" + id,
		"--containerd-namespace", "berth-test-" + id,
		"--containerd-plugins-namespace", "berth-test-" + id + "-plugins",
		"--log-level", "warn",
	}
	if o.LiveRestore {
		p.args = append(p.args, "--live-restore")
	}
	p.log, err = os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.startNamespace(); err != nil {
		unavailable(t, "private dockerd", err)
	}
	if err := p.start(); err != nil {
		unavailable(t, "private dockerd", err)
	}
	p.Client, err = client.NewClientWithOpts(client.WithHost(p.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.reservePools(); err != nil {
		unavailable(t, "private dockerd", err)
	}
	return p
}

// reservePools keeps the private engine's networks off 172.17.0.0/16, the
// subnet the shared engine's docker0 has (Docker's default bridge keeps
// the subnet it stored, even when another bridge has that route by then).
// An engine checks the host's routes before it gives a network a subnet,
// so the private engine skips what the shared one's bridges route — but
// not docker0's subnet while docker0 is missing (a shared engine not
// started yet): a private network took 172.17.0.0/16 then, outlived a
// killed test, and the route to the shared engine's containers led to it
// (a published port answered EOF). The reservation is a network whose
// bridge gets no address (inhibit_ipv4), hence no route.
func (p *PrivateDocker) reservePools() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := p.Client.NetworkCreate(ctx, "reserved-docker0", network.CreateOptions{
		Driver:   "bridge",
		Internal: true,
		IPAM:     &network.IPAM{Config: []network.IPAMConfig{{Subnet: "172.17.0.0/16"}}},
		Options:  map[string]string{"com.docker.network.bridge.inhibit_ipv4": "true"},
		Labels:   map[string]string{"berth.test.reserved": "true"},
	})
	if err != nil {
		return fmt.Errorf("reserve docker0's subnet in the private engine: %w", err)
	}
	return nil
}

const poolFlag = "--default-address-pool"

// start runs dockerd and waits until it answers a ping.
func (p *PrivateDocker) start() error {
	p.mu.Lock()
	restart := p.cmd != nil
	p.mu.Unlock()
	args := p.args
	if restart && !p.LiveRestore {
		// A restart without live-restore but with address pools deletes
		// docker0 (above). The networks it made keep their subnets.
		args = nil
		for i := 0; i < len(p.args); i++ {
			if p.args[i] == poolFlag {
				i++
				continue
			}
			args = append(args, p.args[i])
		}
	}
	cmd := p.inNamespace("dockerd", args...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	// Its own process group: signals to the test's group never reach it.
	// Killed with the test process (a test that times out runs no
	// cleanup), as testenv's other services are.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	c, err := client.NewClientWithOpts(client.WithHost(p.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("dockerd exited during startup:\n%s", p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd not answering after 60 s: %v\n%s", err, p.logTail())
		}
	}
}

func (p *PrivateDocker) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "dockerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
