package reconcile

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
)

// healthPortLost marks, in a plan's view of the host, a running server
// whose published port refuses connections: Docker, restarted with
// live-restore, could not bind the port again (a process took it while
// the engine was down) yet lists and inspects it as published. No proxy
// listens, so the balancer's upstream is dead though the container runs
// and passes its HEALTHCHECK; the plan replaces it like an unhealthy one.
const healthPortLost = "port-lost"

// markLostPorts probes the published port of each running server of env
// that would otherwise be kept, and marks those that refuse a connection.
// Only a refusal counts: a slow or full accept queue is not a lost port.
func (d *Deployer) markLostPorts(ctx context.Context, env *envs.Env, actual []engine.Managed) {
	dial := d.dialPort
	if dial == nil {
		dial = dialLoopback
	}
	for i := range actual {
		m := &actual[i]
		svc := env.Service(m.Service)
		if m.Role != string(envs.RoleServer) || m.State != "running" || (m.Health != "healthy" && m.Health != "") || svc == nil || svc.Berth.Port == 0 {
			continue
		}
		addr := publishedAddr(m.Ports, svc.Berth.Port)
		if addr == "" {
			continue
		}
		if err := dial(ctx, addr); errors.Is(err, syscall.ECONNREFUSED) {
			d.logger().Warn("a server's published port refuses connections (Docker lost it, e.g. restarted while another process took the port): the container is replaced",
				"env", env.Name, "service", m.Service, "container", m.Name, "address", addr)
			m.Health = healthPortLost
		}
	}
}

// publishedAddr is the loopback address ports ("127.0.0.1:32770->8080/tcp")
// publish the container's port on, "" when none.
func publishedAddr(ports []string, port int) string {
	suffix := "->" + strconv.Itoa(port) + "/tcp"
	for _, p := range ports {
		if host, ok := strings.CutSuffix(p, suffix); ok && strings.HasPrefix(host, "127.0.0.1:") {
			return host
		}
	}
	return ""
}

func dialLoopback(ctx context.Context, addr string) error {
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}
