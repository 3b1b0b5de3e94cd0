package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Published ports of a private engine come from a block of its own.
//
// dockerd 20.10 gives a port published without a host port (127.0.0.1::80,
// as berth publishes its servers) the next free one of the range in
// /proc/sys/net/ipv4/ip_local_port_range, going round it from its start,
// and tries ten before it gives up. Every engine starts at the same port
// and knows only its own, and the kernel hands out the same range to
// outgoing connections. With a dozen engines on one host, a
// container's start failed with "Error starting userland proxy: listen
// tcp4 127.0.0.1:32777: bind: address already in use", and a port one
// test had let go was taken by another engine's proxy, which then answered
// for it.
//
// So each private engine runs in a mount namespace of its own where that
// file says "B B+99": B from 26000 up in steps of 100, below the kernel's
// range for outgoing connections (32768 up) and above FreePort's
// (20000–25999), one per engine on the host, claimed with a lock on its
// file for the engine's life. The namespace is made by a small process
// (sleep) and kept open as a file, so a restarted dockerd enters the same
// one its containerd and shims still run in: the layers dockerd mounts
// must be where runc looks for them.
const (
	portBlocks    = 65 // 26000 + 65×100 = 32500, below 32768
	portBlockSize = 100
	portBlockBase = 26000
)

// claimPortBlock locks the first free block on the host and returns its
// range and the lock (held while it is open), waiting while none is free.
func claimPortBlock() (first, last int, lock *os.File, err error) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		for k := range portBlocks {
			f, err := os.OpenFile(filepath.Join("/tmp", fmt.Sprintf("berth-test-ports-%d.lock", k)), os.O_CREATE|os.O_RDWR, 0o600)
			if err != nil {
				return 0, 0, nil, err
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				first = portBlockBase + k*portBlockSize
				return first, first + portBlockSize - 1, f, nil
			}
			f.Close()
		}
		if time.Now().After(deadline) {
			return 0, 0, nil, fmt.Errorf("all %d port blocks of private engines taken for 10 min", portBlocks)
		}
		time.Sleep(time.Second)
	}
}

// startNamespace claims the engine's port block and starts the process
// that holds its mount namespace, with the block in place of the kernel's
// port range.
func (p *PrivateDocker) startNamespace() error {
	first, last, lock, err := claimPortBlock()
	if err != nil {
		return err
	}
	p.portLock = lock
	p.Ports = [2]int{first, last}
	rng := filepath.Join(p.Dir, "port_range")
	if err := os.WriteFile(rng, fmt.Appendf(nil, "%d %d\n", first, last), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "sh", "-c",
		`mount --bind "$0" /proc/sys/net/ipv4/ip_local_port_range && echo ready && exec sleep infinity`, rng)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the engine's mount namespace: %w", err)
	}
	p.holder = cmd
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "ready\n"
	}()
	select {
	case ok := <-ready:
		if !ok {
			return fmt.Errorf("set the engine's port range in its mount namespace failed:\n%s", p.logTail())
		}
	case <-time.After(time.Minute):
		return fmt.Errorf("the engine's mount namespace not ready after a minute")
	}
	// The namespace itself, kept open: it lasts while the file is open,
	// should the holder die.
	p.ns, err = os.Open("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/mnt")
	return err
}

// inNamespace is the command that runs name with args in the engine's
// mount namespace (nsenter execs it: the process id is name's).
func (p *PrivateDocker) inNamespace(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--mount=/proc/self/fd/3", "--", name}, args...)...)
	cmd.ExtraFiles = []*os.File{p.ns} // fd 3
	return cmd
}

// stopNamespace unmounts what the engine left under Dir in its namespace,
// ends the holder and lets the port block go.
func (p *PrivateDocker) stopNamespace() {
	if p.ns != nil {
		p.inNamespace("sh", "-c", `grep -o " $0/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`, p.Dir).Run()
		p.ns.Close()
	}
	if p.holder != nil {
		syscall.Kill(-p.holder.Process.Pid, syscall.SIGKILL)
		p.holder.Wait()
	}
	if p.portLock != nil {
		p.portLock.Close()
	}
}
