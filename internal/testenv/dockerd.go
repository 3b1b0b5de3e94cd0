package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
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
// published on 127.0.0.1 go through its userland proxy.
//
// Never --bridge=none beside another engine, nor --default-address-pool:
// dockerd 20.10 then deletes the interface docker0 — the shared engine's
// default bridge — at startup (with --bridge=none), or at every restart
// (with address pools and no live-restore: moby's "clear stale bridge
// network" calls removeDefaultBridgeInterface). The private engine gets a
// bridge of its own instead, made here and deleted when the test ends with
// the bridges of the networks it made; those take subnets from Docker's
// default pools, which skip the ranges the host routes already.
type PrivateDocker struct {
	Dir    string // everything it has lives here
	Host   string // "unix://DIR/docker.sock", for DOCKER_HOST or the client
	Client *client.Client
	// LiveRestore is whether containers survive a restart of the daemon.
	LiveRestore bool

	t      testing.TB
	args   []string
	bridge string // its default bridge, made by StartPrivateDocker
	net    string // "10.N.": its bridge is 10.N.200.1/24

	networks []string // ids of its networks, for their bridges
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
		bridge: "bt" + strings.TrimPrefix(id, "bd"), net: freeNet()}
	if len(p.bridge) > 15 { // IFNAMSIZ
		p.bridge = p.bridge[:15]
	}
	t.Cleanup(p.cleanup)
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("ip link add %[1]s type bridge && ip addr add %[2]s200.1/24 dev %[1]s && ip link set %[1]s up", p.bridge, p.net)).CombinedOutput(); err != nil {
		unavailable(t, "private dockerd", fmt.Errorf("make its bridge %s: %v: %s", p.bridge, err, out))
	}
	p.args = []string{
		"--config-file", filepath.Join(dir, "daemon.json"), // not /etc/docker/daemon.json
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--host", p.Host,
		"--bridge", p.bridge, "--iptables=false", "--ip-masq=false",
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

// start runs dockerd and waits until it answers a ping.
func (p *PrivateDocker) start() error {
	cmd := exec.Command("dockerd", p.args...)
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

// Pid is the daemon's process id.
func (p *PrivateDocker) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Pause freezes the daemon (SIGSTOP): it still accepts connections on its
// socket (the kernel queues them) but answers nothing, as a hung dockerd.
func (p *PrivateDocker) Pause() {
	p.t.Helper()
	pid := p.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		p.t.Fatalf("testenv: SIGSTOP dockerd: %v", err)
	}
	// The stop reaches each thread when it next runs: wait until every
	// one has stopped, or requests sent now might still be answered.
	deadline := time.Now().Add(10 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			p.t.Fatalf("testenv: dockerd %d not stopped 10 s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// allStopped reports whether every thread of pid is stopped (state T).
func allStopped(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if len(stats) == 0 {
		return false
	}
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // a thread that just exited
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "T") {
			return false
		}
	}
	return true
}

// Resume lets a paused daemon go on (SIGCONT).
func (p *PrivateDocker) Resume() {
	p.t.Helper()
	if err := syscall.Kill(p.Pid(), syscall.SIGCONT); err != nil {
		p.t.Fatalf("testenv: SIGCONT dockerd: %v", err)
	}
}

// Stop stops the daemon as systemctl stop docker does (SIGTERM, then
// SIGKILL after a minute) and waits until it is gone. Without live-restore
// it stops the containers first.
func (p *PrivateDocker) Stop() {
	p.t.Helper()
	if err := p.stop(time.Minute); err != nil {
		p.t.Fatalf("testenv: stop dockerd: %v", err)
	}
}

func (p *PrivateDocker) stop(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGCONT) // a paused daemon cannot stop
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return fmt.Errorf("dockerd did not stop within %s; killed", grace)
}

// Start starts a stopped daemon again on the same state and waits until
// it answers.
func (p *PrivateDocker) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("testenv: restart dockerd: %v", err)
	}
}

// Restart is Stop then Start: systemctl restart docker.
func (p *PrivateDocker) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

func (p *PrivateDocker) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "dockerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// cleanup removes every container, stops the daemon and its containerd,
// unmounts what is left under Dir and removes it.
func (p *PrivateDocker) cleanup() {
	t := p.t
	if p.Client != nil {
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		if cmd != nil {
			syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if cs, err := p.Client.ContainerList(ctx, container.ListOptions{All: true}); err == nil {
			for _, c := range cs {
				p.Client.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
			}
		}
		// Networks' bridges outlive a stopped daemon.
		if ns, err := p.Client.NetworkList(ctx, network.ListOptions{}); err == nil {
			for _, n := range ns {
				p.networks = append(p.networks, n.ID)
			}
		}
		p.Client.NetworksPrune(ctx, filters.Args{})
		cancel()
		p.Client.Close()
	}
	if err := p.stop(time.Minute); err != nil {
		t.Logf("testenv: private dockerd: %v", err)
	}
	// Its containerd: gone with a daemon that stopped cleanly, left running
	// by one with live-restore or one that was killed.
	if b, err := os.ReadFile(filepath.Join(p.Dir, "exec", "containerd", "containerd.pid")); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	unmountUnder(p.Dir)
	p.deleteLinks()
	if p.log != nil {
		p.log.Close()
	}
	if t.Failed() {
		t.Logf("testenv: private dockerd's log (last lines):\n%s", p.logTail())
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		t.Logf("testenv: remove %s: %v", p.Dir, err)
	}
}

// freeNet picks "10.N." with no address of the host in 10.N.0.0/16.
func freeNet() string {
	out, _ := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	for {
		n, _ := rand.Int(rand.Reader, big.NewInt(200))
		net := fmt.Sprintf("10.%d.", 20+n.Int64())
		if !strings.Contains(string(out), " "+net) {
			return net
		}
	}
}

// deleteLinks deletes the private engine's bridge and any bridge left of
// its networks (br- and the start of the network's id, as libnetwork names
// them). Nothing else: the shared engine's links are never touched.
func (p *PrivateDocker) deleteLinks() {
	if p.bridge == "" {
		return
	}
	exec.Command("ip", "link", "del", p.bridge).Run()
	for _, id := range p.networks {
		if len(id) >= 12 {
			exec.Command("ip", "link", "del", "br-"+id[:12]).Run() // gone already, mostly
		}
	}
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			mounts = append(mounts, fields[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}
