package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// EnsureProject creates the project's networks and named volumes that do not
// exist yet, with Compose's names and labels, so `docker compose` sees the
// same project. External ones must exist already.
func (e *Engine) EnsureProject(ctx context.Context, p *types.Project) error {
	e.project.Lock()
	defer e.project.Unlock()
	for key, n := range p.Networks {
		if _, err := e.c.NetworkInspect(ctx, n.Name, network.InspectOptions{}); err == nil {
			continue
		} else if !client.IsErrNotFound(err) {
			return fmt.Errorf("inspect network %s: %w", n.Name, err)
		}
		if bool(n.External) {
			return fmt.Errorf("external network %s does not exist", n.Name)
		}
		labels := map[string]string{composeProject: p.Name, composeNetwork: key}
		for k, v := range n.Labels {
			labels[k] = v
		}
		_, err := e.c.NetworkCreate(ctx, n.Name, network.CreateOptions{Driver: n.Driver, Options: n.DriverOpts, Internal: n.Internal, Attachable: n.Attachable, Labels: labels})
		if err != nil {
			return fmt.Errorf("create network %s: %w", n.Name, err)
		}
		e.log.Info("network created", "network", n.Name)
	}
	for key, v := range p.Volumes {
		if bool(v.External) {
			if _, err := e.c.VolumeInspect(ctx, v.Name); err != nil {
				return fmt.Errorf("external volume %s: %w", v.Name, err)
			}
			continue
		}
		labels := map[string]string{composeProject: p.Name, composeVolume: key}
		for k, val := range v.Labels {
			labels[k] = val
		}
		// VolumeCreate is idempotent for an existing volume of that name.
		if _, err := e.c.VolumeCreate(ctx, volume.CreateOptions{Name: v.Name, Driver: v.Driver, DriverOpts: v.DriverOpts, Labels: labels}); err != nil {
			return fmt.Errorf("create volume %s: %w", v.Name, err)
		}
	}
	return nil
}

// Create creates the container of req and connects its further networks.
// A request with secret files runs berth's init first (see secretInit).
func (e *Engine) Create(ctx context.Context, req *Request) (string, error) {
	var payload []byte
	if len(req.SecretFiles) > 0 {
		var err error
		if req, payload, err = e.withSecretInit(ctx, req); err != nil {
			return "", err
		}
	}
	resp, err := e.c.ContainerCreate(ctx, req.Config, req.Host, req.Network, nil, req.Name)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", req.Name, err)
	}
	if payload != nil {
		e.mu.Lock()
		e.pending[resp.ID] = payload
		e.mu.Unlock()
	}
	for name, ep := range req.MoreNetworks {
		if err := e.c.NetworkConnect(ctx, name, resp.ID, ep); err != nil {
			e.c.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true})
			return "", fmt.Errorf("connect %s to network %s: %w", req.Name, name, err)
		}
	}
	return resp.ID, nil
}

// Start starts a created container. One with secret files gets them on
// its stdin, attached before the start: they pass through the Docker API
// and the container's tmpfs only, never a file on the host.
func (e *Engine) Start(ctx context.Context, id string) error {
	e.mu.Lock()
	payload := e.pending[id]
	delete(e.pending, id)
	e.mu.Unlock()
	if payload == nil {
		if err := e.c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			return fmt.Errorf("start container %s: %w", short(id), err)
		}
		return nil
	}
	hj, err := e.c.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdin: true})
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", short(id), err)
	}
	defer hj.Close()
	if err := e.c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", short(id), err)
	}
	if _, err := hj.Conn.Write(payload); err != nil {
		return fmt.Errorf("hand secret files to container %s: %w", short(id), err)
	}
	if err := hj.CloseWrite(); err != nil {
		return fmt.Errorf("hand secret files to container %s: %w", short(id), err)
	}
	return nil
}

// SecretInitPath is where berth's init is mounted in a container.
const SecretInitPath = "/.berth/init"

// withSecretInit returns req with berth's init in front of the container's
// own command (the service's entrypoint and command, else the image's) and
// the files' payload for Start.
func (e *Engine) withSecretInit(ctx context.Context, req *Request) (*Request, []byte, error) {
	if e.InitPath == "" {
		return nil, nil, fmt.Errorf("container %s has secret files but berth's own binary (its init) was not found", req.Name)
	}
	cfg, host := *req.Config, *req.Host
	entry, cmd := []string(cfg.Entrypoint), []string(cfg.Cmd)
	if len(entry) == 0 {
		img, err := e.c.ImageInspect(ctx, cfg.Image)
		if err != nil {
			return nil, nil, fmt.Errorf("inspect image %s: %w", cfg.Image, err)
		}
		if img.Config != nil {
			entry = img.Config.Entrypoint
			if len(cmd) == 0 {
				cmd = img.Config.Cmd
			}
		}
	}
	argv := append(append([]string{}, entry...), cmd...)
	if len(argv) == 0 {
		return nil, nil, fmt.Errorf("container %s has no command to run after its secret files", req.Name)
	}
	cfg.Entrypoint = append([]string{SecretInitPath, "secret-init", "--"}, argv...)
	cfg.Cmd = nil
	host.Mounts = append(slices.Clone(host.Mounts), mount.Mount{Type: mount.TypeBind, Source: e.InitPath, Target: SecretInitPath, ReadOnly: true})
	payload, err := json.Marshal(req.SecretFiles)
	if err != nil {
		return nil, nil, err
	}
	out := *req
	out.Config, out.Host = &cfg, &host
	return &out, payload, nil
}

// WaitHealthy waits until the container's HEALTHCHECK reports healthy. It
// fails at once when the container exits, and when timeout passes.
// "unhealthy" is not final: a slow starter without a start_period turns
// unhealthy before it turns healthy, so only the deadline decides. A
// container without a healthcheck must stay running for settle instead.
func (e *Engine) WaitHealthy(ctx context.Context, id string, timeout, settle time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no health report yet"
	for {
		ins, err := e.c.ContainerInspect(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("container %s not healthy after %s (%s)", short(id), timeout, last)
			}
			return fmt.Errorf("inspect container %s: %w", short(id), err)
		}
		st := ins.State
		switch {
		case st == nil:
		case !st.Running:
			return fmt.Errorf("container %s exited with code %d before it was healthy", short(id), st.ExitCode)
		case st.Health == nil:
			if time.Since(start) >= settle {
				return nil
			}
		case st.Health.Status == "healthy":
			return nil
		default:
			last = "health " + st.Health.Status
			if n := len(st.Health.Log); n > 0 {
				last += fmt.Sprintf(", last check exited %d", st.Health.Log[n-1].ExitCode)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container %s not healthy after %s (%s)", short(id), timeout, last)
		case <-tick.C:
		}
	}
}

// HostPort returns the loopback host port Docker published for the
// container's port (e.g. "8080/tcp").
func (e *Engine) HostPort(ctx context.Context, id, port string) (string, error) {
	ins, err := e.c.ContainerInspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	if ins.NetworkSettings != nil {
		for p, bindings := range ins.NetworkSettings.Ports {
			if string(p) == port && len(bindings) > 0 {
				return bindings[0].HostPort, nil
			}
		}
	}
	return "", fmt.Errorf("container %s publishes no %s", short(id), port)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// HasHealthcheck reports whether the container runs a HEALTHCHECK (its own
// or its image's).
func (e *Engine) HasHealthcheck(ctx context.Context, id string) (bool, error) {
	ins, err := e.c.ContainerInspect(ctx, id)
	if err != nil {
		return false, fmt.Errorf("inspect container %s: %w", short(id), err)
	}
	return ins.State != nil && ins.State.Health != nil, nil
}
