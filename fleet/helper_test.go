package fleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Some tests need an agent that is a real process, to SIGKILL or SIGSTOP
// it: the test binary runs itself with FLEET_HELPER set to a role.
func TestMain(m *testing.M) {
	if role := os.Getenv("FLEET_HELPER"); role != "" {
		os.Exit(helperMain(role))
	}
	os.Exit(m.Run())
}

func helperMain(role string) int {
	switch role {
	case "etcd":
		return embeddedEtcdMain()
	case "idle-none":
		fmt.Println("ready")
		time.Sleep(time.Hour)
		return 0
	}
	log := hclog.New(&hclog.LoggerOptions{Name: os.Getenv("FLEET_HOST"), Output: os.Stderr})
	ttl, _ := time.ParseDuration(os.Getenv("FLEET_TTL"))
	c, err := New(Config{Etcd: EtcdConfig{Endpoints: strings.Split(os.Getenv("FLEET_EPS"), ",")},
		Host: os.Getenv("FLEET_HOST"), LeaseTTL: ttl, Timeout: time.Second}, Options{Log: log})
	if err != nil {
		log.Error("new", "error", err)
		return 2
	}
	ctx := context.Background()
	go c.Run(ctx)
	mark := func(s string) {
		f, err := os.OpenFile(os.Getenv("FLEET_MARK"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err == nil {
			fmt.Fprintln(f, s)
			f.Close()
		}
	}
	switch role {
	case "idle-fleet": // an idle agent's fleet side: session, host record, control watch
		c.Publish("prod", HostState{Live: &Commit{Revision: "r0", Author: "Ada", Subject: "first"}})
		go func() {
			for range c.WatchControl(ctx, "prod") {
			}
		}()
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case "migrate":
		_, err := c.Migrate(ctx, "prod", Migration{Service: "migrate", Image: "app@sha256:1", Command: []string{"migrate"}},
			func(ctx context.Context, token int64) error {
				mark(fmt.Sprintf("started %d", token))
				time.Sleep(time.Hour) // until killed
				return nil
			})
		log.Info("migrate returned", "error", err)
	case "job":
		ns, _ := strconv.ParseInt(os.Getenv("FLEET_T"), 10, 64)
		run, _ := time.ParseDuration(os.Getenv("FLEET_RUN"))
		claim, err := c.ClaimJob(ctx, "prod", "cleanup", time.Unix(0, ns), JobPolicy{})
		if err != nil {
			log.Error("claim", "error", err)
			return 3
		}
		mark(fmt.Sprintf("claimed %d", claim.Token))
		start := time.Now()
		// Sleep in small steps of wall time, so a SIGSTOP stretches the
		// run by as long as the process is stopped.
		for time.Since(start) < run {
			time.Sleep(50 * time.Millisecond)
		}
		if err := claim.Finish(ctx, JobResult{Status: JobSucceeded, Started: start, Ended: time.Now()}); err != nil {
			log.Error("finish", "error", err)
			return 4
		}
		if err := c.Flush(ctx); err != nil {
			log.Error("flush", "error", err)
			return 5
		}
		mark("finished")
	}
	_ = c.Close()
	return 0
}

// helper is an agent running as a child process.
type helper struct {
	cmd  *exec.Cmd
	mark string
	done chan error
}

func startHelper(t *testing.T, role, host string, endpoints []string, ttl time.Duration, env ...string) *helper {
	t.Helper()
	h := &helper{mark: t.TempDir() + "/mark", done: make(chan error, 1)}
	h.cmd = exec.Command(os.Args[0], "-test.run=^$")
	h.cmd.Env = append(os.Environ(), "FLEET_HELPER="+role, "FLEET_HOST="+host, "FLEET_EPS="+strings.Join(endpoints, ","),
		"FLEET_TTL="+ttl.String(), "FLEET_MARK="+h.mark)
	h.cmd.Env = append(h.cmd.Env, env...)
	h.cmd.Stderr = newTlogWriter(t)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(func() {
		_ = h.cmd.Process.Signal(syscall.SIGCONT)
		_ = h.cmd.Process.Kill()
		<-h.done
	})
	return h
}

// marks returns the lines the helper wrote so far.
func (h *helper) marks() []string {
	b, _ := os.ReadFile(h.mark)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (h *helper) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := h.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}
