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
	"github.com/docker/docker/errdefs"

	"berth.dev/berth/internal/failure"
)

// EnsureProject creates the project's networks and named volumes that do not
// exist yet, with Compose's names and labels, so `docker compose` sees the
// same project. External ones must exist already. A network or volume that
// exists under this project's name for it but carries another project's
// labels (or none) is refused as a verdict, never used: env "prod"
// declaring volume "eu_data" gets the name prod_eu_data, which is project
// "prod_eu"'s volume "data".
func (e *Engine) EnsureProject(ctx context.Context, p *types.Project) error {
	e.project.Lock()
	defer e.project.Unlock()
	for key, n := range p.Networks {
		cctx, cancel := e.call(ctx)
		existing, err := e.c.NetworkInspect(cctx, n.Name, network.InspectOptions{})
		cancel()
		if err == nil {
			if !bool(n.External) {
				if err := ownedBy(existing.Labels, composeNetwork, p.Name, key); err != nil {
					return failure.AsVerdict(fmt.Errorf("network %s (networks.%s): %w", n.Name, key, err))
				}
			}
			continue
		} else if !client.IsErrNotFound(err) {
			return classify(fmt.Errorf("inspect network %s: %w", n.Name, err))
		}
		if bool(n.External) {
			return fmt.Errorf("external network %s does not exist", n.Name)
		}
		labels := map[string]string{composeProject: p.Name, composeNetwork: key}
		for k, v := range n.Labels {
			labels[k] = v
		}
		cctx, cancel = e.call(ctx)
		_, err = e.c.NetworkCreate(cctx, n.Name, network.CreateOptions{Driver: n.Driver, Options: n.DriverOpts, Internal: n.Internal, Attachable: n.Attachable, Labels: labels})
		cancel()
		if err != nil {
			return e.classifyAt(ctx, fmt.Errorf("create network %s: %w", n.Name, err))
		}
		e.log.Info("network created", "network", n.Name)
	}
	for key, v := range p.Volumes {
		cctx, cancel := e.call(ctx)
		existing, err := e.c.VolumeInspect(cctx, v.Name)
		cancel()
		switch {
		case bool(v.External) && err != nil:
			return classify(fmt.Errorf("external volume %s: %w", v.Name, err))
		case bool(v.External):
			continue
		case err == nil:
			if err := ownedBy(existing.Labels, composeVolume, p.Name, key); err != nil {
				return failure.AsVerdict(fmt.Errorf("volume %s (volumes.%s): %w", v.Name, key, err))
			}
			continue
		case !client.IsErrNotFound(err):
			return classify(fmt.Errorf("inspect volume %s: %w", v.Name, err))
		}
		labels := map[string]string{composeProject: p.Name, composeVolume: key}
		for k, val := range v.Labels {
			labels[k] = val
		}
		cctx, cancel = e.call(ctx)
		_, err = e.c.VolumeCreate(cctx, volume.CreateOptions{Name: v.Name, Driver: v.Driver, DriverOpts: v.DriverOpts, Labels: labels})
		cancel()
		if err != nil {
			return e.classifyAt(ctx, fmt.Errorf("create volume %s: %w", v.Name, err))
		}
	}
	return nil
}

// ownedBy says why a network or volume with these labels is not project's
// key (kindLabel is Compose's network or volume label), or nil.
func ownedBy(labels map[string]string, kindLabel, project, key string) error {
	gotProject, gotKey := labels[composeProject], labels[kindLabel]
	switch {
	case gotProject == project && gotKey == key:
		return nil
	case gotProject == "":
		return fmt.Errorf("exists already and belongs to no Compose project (made by hand, or by another tool): refusing to use it")
	}
	return fmt.Errorf("exists already and belongs to project %q (as %q): refusing to use it", gotProject, gotKey)
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
	e.watchRestarts()
	cctx, cancel := e.starting(ctx)
	defer cancel()
	resp, err := e.c.ContainerCreate(cctx, req.Config, req.Host, req.Network, nil, req.Name)
	if err != nil {
		if errdefs.IsConflict(err) {
			if held := e.heldByAnother(ctx, req); held != nil {
				return "", held
			}
		}
		return "", e.classifyAt(ctx, fmt.Errorf("create container %s: %w", req.Name, err))
	}
	if payload != nil {
		e.mu.Lock()
		e.pending[resp.ID] = payload
		e.mu.Unlock()
	}
	for name, ep := range req.MoreNetworks {
		if err := e.c.NetworkConnect(cctx, name, resp.ID, ep); err != nil {
			// Best effort: a container left behind is a stale one the
			// next pass removes.
			_ = e.Remove(context.WithoutCancel(ctx), resp.ID)
			return "", e.classifyAt(ctx, fmt.Errorf("connect %s to network %s: %w", req.Name, name, err))
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
	outer := ctx
	ctx, cancel := e.starting(ctx)
	defer cancel()
	if payload == nil {
		if err := e.c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			return e.classifyAt(outer, fmt.Errorf("start container %s: %w", short(id), err))
		}
		return nil
	}
	hj, err := e.c.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdin: true})
	if err != nil {
		return classify(fmt.Errorf("attach to container %s: %w", short(id), err))
	}
	defer hj.Close()
	if d, ok := ctx.Deadline(); ok {
		// The hijacked connection is outside the client's context.
		_ = hj.Conn.SetDeadline(d)
	}
	if err := e.c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return e.classifyAt(outer, fmt.Errorf("start container %s: %w", short(id), err))
	}
	if _, err := hj.Conn.Write(payload); err != nil {
		return classify(fmt.Errorf("hand secret files to container %s: %w", short(id), err))
	}
	if err := hj.CloseWrite(); err != nil {
		return classify(fmt.Errorf("hand secret files to container %s: %w", short(id), err))
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
		cctx, cancel := e.call(ctx)
		img, err := e.c.ImageInspect(cctx, cfg.Image)
		cancel()
		if err != nil {
			return nil, nil, classify(fmt.Errorf("inspect image %s: %w", cfg.Image, err))
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

// WaitHealthy waits until the container's HEALTHCHECK reports healthy. A
// container without a healthcheck must stay running for settle instead.
// A container that exits first, or is not healthy when timeout passes, is
// a verdict on the revision. "unhealthy" is not final: a slow starter
// without a start_period turns unhealthy before it turns healthy, so only
// the deadline decides. The verdict rests on what the engine answered: an
// engine that stops answering meanwhile (hung, restarting — and a
// restarting engine stops containers on its way down) is an outage.
//
// Health changes arrive through the engine's event stream (health_events.go):
// each one is inspected at once; inspects in between only back it up.
func (e *Engine) WaitHealthy(ctx context.Context, id string, timeout, settle time.Duration) error {
	start := time.Now()
	deadline := start.Add(timeout)
	changed, streaming, unsubscribe := e.subscribeHealth(id)
	defer unsubscribe()
	every := healthPollFallback
	if streaming {
		every = healthPollStreaming
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	settled := time.NewTimer(settle) // a container without a HEALTHCHECK
	defer settled.Stop()
	last := "no health report yet"
	for {
		ins, err := e.inspect(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		st := ins.State
		switch {
		case st == nil:
		case !st.Running:
			err := fmt.Errorf("container %s exited with code %d before it was healthy", short(id), st.ExitCode)
			if e.stoppedByEngine(ctx, st.StartedAt) {
				return failure.AsOutage(fmt.Errorf("%w, and the engine stopped or restarted meanwhile (without live-restore it stops every container)", err))
			}
			return failure.AsVerdict(err)
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
		if !time.Now().Before(deadline) {
			return failure.AsVerdict(fmt.Errorf("container %s not healthy after %s (%s)", short(id), timeout, last))
		}
		if up := e.healthUp(); up != streaming {
			streaming = up
			every = healthPollFallback
			if up {
				every = healthPollStreaming
			}
			tick.Reset(every)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-settled.C:
		case <-tick.C:
		}
	}
}

// stoppedByEngine reports whether a container that started at startedAt
// (as the engine reports it) and has exited may have been stopped by the
// engine stopping: the engine does not answer a new connection now (it is
// on its way down: it closes its listener before it stops containers), or
// it restarted since (berth's event stream broke).
func (e *Engine) stoppedByEngine(ctx context.Context, startedAt string) bool {
	started, err := time.Parse(time.RFC3339Nano, startedAt)
	return err != nil || !e.answering(ctx) || e.mayHaveRestarted(started)
}

// inspect is ContainerInspect within the call deadline.
func (e *Engine) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	ctx, cancel := e.call(ctx)
	defer cancel()
	ins, err := e.c.ContainerInspect(ctx, id)
	if err != nil {
		return ins, classify(fmt.Errorf("inspect container %s: %w", short(id), err))
	}
	return ins, nil
}

// HostPort returns the loopback host port Docker published for the
// container's port (e.g. "8080/tcp").
func (e *Engine) HostPort(ctx context.Context, id, port string) (string, error) {
	ins, err := e.inspect(ctx, id)
	if err != nil {
		return "", err
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
	ins, err := e.inspect(ctx, id)
	if err != nil {
		return false, err
	}
	return ins.State != nil && ins.State.Health != nil, nil
}

// heldByAnother says, for a create refused because the name is taken,
// whether a container berth does not manage for this env holds it (another
// env's, whose names run into this one's, or not berth's at all): a
// verdict, since the same revision meets the same container again. A
// holder of this env is a leftover the next pass retires (an outage), and
// a holder that cannot be inspected says nothing (nil).
func (e *Engine) heldByAnother(ctx context.Context, req *Request) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	ins, err := e.c.ContainerInspect(cctx, req.Name)
	if err != nil || ins.Config == nil {
		return nil
	}
	env := ""
	if req.Config != nil {
		env = req.Config.Labels[LabelEnv]
	}
	switch holder := ins.Config.Labels[LabelEnv]; {
	case holder == env:
		return nil
	case holder != "":
		return failure.AsVerdict(fmt.Errorf("create container %s: the name is held by env %s's container (service %s): the two envs' names run into each other; rename the service, or run the envs on different hosts",
			req.Name, holder, ins.Config.Labels[LabelService]))
	}
	return failure.AsVerdict(fmt.Errorf("create container %s: the name is held by a container berth does not manage (%.12s): rename the service, or remove that container", req.Name, ins.ID))
}
