package reconcile

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
)

// A running, healthy server whose published port refuses connections
// (Docker restarted with live-restore and could not bind it again, yet
// lists it as published) is replaced; one whose port answers, or is only
// slow, is kept; other roles are never probed.
func TestMarkLostPorts_ARefusedPublishedPortReplacesTheServer(t *testing.T) {
	env := testEnv()
	for i := range env.Services {
		if env.Services[i].Name == "web" {
			env.Services[i].Berth.Port = 8080
		}
	}
	var probed []string
	d := &Deployer{Log: hclog.NewNullLogger(), dialPort: func(_ context.Context, addr string) error {
		probed = append(probed, addr)
		switch addr {
		case "127.0.0.1:32771":
			return syscall.ECONNREFUSED
		case "127.0.0.1:32772":
			return context.DeadlineExceeded
		}
		return nil
	}}
	running := func(id, svc, role string, port string) engine.Managed {
		m := engine.Managed{ID: id, Name: "prod-" + svc + "-" + id, Service: svc, Role: role, Slot: 1, ConfigHash: "hs2", Image: "r/app@sha256:bbbb", State: "running", Health: "healthy"}
		if port != "" {
			m.Ports = []string{"127.0.0.1:" + port + "->8080/tcp"}
		}
		return m
	}
	for _, c := range []struct {
		name, port, want string
	}{
		{"refused", "32771", "web: replace, its published port refuses connections (lost by Docker)"},
		{"slow", "32772", "web: keep"},
		{"answers", "32773", "web: keep"},
	} {
		t.Run(c.name, func(t *testing.T) {
			actual := []engine.Managed{running("1", "web", string(envs.RoleServer), c.port), running("2", "worker", string(envs.RoleWorker), "32771")}
			actual[1].ConfigHash = "hw2"
			probed = nil
			d.markLostPorts(context.Background(), env, actual)
			if len(probed) != 1 || probed[0] != "127.0.0.1:"+c.port {
				t.Fatalf("probed %v, want the server's port only", probed)
			}
			got := render(Plan(env, hashes(env), actual))
			if !strings.Contains(got, c.want) {
				t.Fatalf("plan:\n%s\nwant a line %q", got, c.want)
			}
		})
	}
}
