package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

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
	killShims("berth-test-" + filepath.Base(p.Dir))
	p.stopNamespace()
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

// killShims kills the containerd shims of namespace and the container
// processes under them. A container the daemon could not remove (it was
// restarting, or restored with live-restore and wedged) outlives its
// daemon and containerd in its shim, holding its network's bridge and
// route: a later engine's network could then get the same subnet.
func killShims(namespace string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var shims []int
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), "\x00-namespace\x00"+namespace+"\x00") {
			continue
		}
		var pid int
		fmt.Sscan(filepath.Base(filepath.Dir(f)), &pid)
		shims = append(shims, pid)
	}
	for _, shim := range shims {
		for _, f := range procs {
			var pid int
			fmt.Sscan(filepath.Base(filepath.Dir(f)), &pid)
			if ppid, ok := ParentPid(pid); ok && ppid == shim {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		syscall.Kill(shim, syscall.SIGKILL)
	}
}

// ParentPid is the parent of process pid, from /proc (false: gone).
func ParentPid(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid …; comm may hold spaces, so from the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// freeNet picks "10.N." with no address of the host in 10.N.0.0/16.
func freeNet(taken string) string {
	for {
		n, _ := rand.Int(rand.Reader, big.NewInt(200))
		net := fmt.Sprintf("10.%d.", 20+n.Int64())
		if !strings.Contains(taken, " "+net) {
			return net
		}
	}
}

// makeBridge picks the engine's 10.N. (one no interface of the host has)
// and makes its bridge, 10.N.200.1/24, under a lock every test process of
// the host takes: two engines started at once picked the same N.
func (p *PrivateDocker) makeBridge() error {
	lock, err := os.OpenFile(filepath.Join("/tmp", "berth-test-nets.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock the choice of a private subnet: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	taken, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		return fmt.Errorf("list the host's addresses: %w", err)
	}
	p.net = freeNet(string(taken))
	if out, err := exec.Command("sh", "-c", fmt.Sprintf("ip link add %[1]s type bridge && ip addr add %[2]s200.1/24 dev %[1]s && ip link set %[1]s up", p.bridge, p.net)).CombinedOutput(); err != nil {
		return fmt.Errorf("make its bridge %s: %v: %s", p.bridge, err, out)
	}
	return nil
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
