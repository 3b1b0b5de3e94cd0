package engine

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"berth.dev/berth/envs"
)

// Managed is one container berth manages, as its labels and the engine
// describe it: the actual state of the host.
type Managed struct {
	ID         string
	Name       string
	Service    string
	Role       string
	Slot       int
	Revision   string
	ConfigHash string
	SpecHash   string // "" for containers made before berth set it
	Image      string // as created, "repo@sha256:…"
	State      string // created, running, exited, …
	Health     string // healthy, starting, unhealthy; "" without a HEALTHCHECK
	OneOff     bool
	// Ports are its published ports, "127.0.0.1:32770->8080/tcp".
	Ports []string `json:",omitempty"`
}

// List returns the containers of env, oldest slot first per service.
func (e *Engine) List(ctx context.Context, env string) ([]Managed, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	cs, err := e.c.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelEnv+"="+env))})
	if err != nil {
		return nil, classify(fmt.Errorf("list containers of %s: %w", env, err))
	}
	out := make([]Managed, 0, len(cs))
	for _, c := range cs {
		slot, _ := strconv.Atoi(c.Labels[LabelSlot])
		name := ""
		if len(c.Names) > 0 {
			name = c.Names[0][1:]
		}
		out = append(out, Managed{
			ID: c.ID, Name: name, Service: c.Labels[LabelService], Role: c.Labels[LabelRole], Slot: slot,
			Revision: c.Labels[LabelRevision], ConfigHash: c.Labels[LabelConfigHash], SpecHash: c.Labels[LabelSpecHash], Image: c.Image, State: c.State,
			Health: health(c.Status), OneOff: c.Labels[composeOneOff] == "True", Ports: ports(c.Ports),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Slot < out[j].Slot
	})
	return out, nil
}

// ports formats a listing's published ports, sorted.
func ports(ps []container.Port) []string {
	var out []string
	for _, p := range ps {
		if p.PublicPort == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s:%d->%d/%s", p.IP, p.PublicPort, p.PrivatePort, p.Type))
	}
	sort.Strings(out)
	return out
}

// Stop stops a container with its own stop signal, killing it after grace
// (nil: the container's stop_grace_period, else Docker's default of 10 s).
// The call's deadline is the grace plus Timeouts.StopMargin.
func (e *Engine) Stop(ctx context.Context, id string, grace *time.Duration) error {
	g, err := e.stopGrace(ctx, id, grace)
	if err != nil {
		return err
	}
	secs := int(g.Seconds())
	sctx, cancel := within(ctx, g+e.Timeouts.StopMargin)
	defer cancel()
	if err := e.c.ContainerStop(sctx, id, container.StopOptions{Timeout: &secs}); err != nil && !client.IsErrNotFound(err) {
		return e.classifyAt(ctx, fmt.Errorf("stop container %s: %w", short(id), err))
	}
	return nil
}

// stopGrace is grace, else the container's own stop timeout, else
// Docker's default; never more than envs.MaxStopGrace, whatever a
// container created from an older (or hostile) revision says: a stop
// timeout of years (or Docker's -1, forever) would hold a retire until the
// watchdog restarts berth, again after every restart.
func (e *Engine) stopGrace(ctx context.Context, id string, grace *time.Duration) (time.Duration, error) {
	if grace != nil {
		return min(max(*grace, 0), envs.MaxStopGrace), nil
	}
	ins, err := e.inspect(ctx, id)
	switch {
	case client.IsErrNotFound(err):
		return 0, nil
	case err != nil:
		return 0, err
	case ins.Config != nil && ins.Config.StopTimeout != nil:
		secs := *ins.Config.StopTimeout
		if secs < 0 || time.Duration(secs) > envs.MaxStopGrace/time.Second {
			return envs.MaxStopGrace, nil
		}
		return time.Duration(secs) * time.Second, nil
	}
	return defaultStopGrace, nil
}

// HostBinds lists the bind mounts of every container on this host, of any
// project, running or not (a stopped container with a restart policy
// mounts again when the engine restarts): envs refuses a bind mount that
// overlaps one another container may write.
func (e *Engine) HostBinds(ctx context.Context) ([]envs.HostBind, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	cs, err := e.c.ContainerList(cctx, container.ListOptions{All: true})
	if err != nil {
		return nil, classify(fmt.Errorf("list containers: %w", err))
	}
	var out []envs.HostBind
	for _, c := range cs {
		name := short(c.ID)
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, m := range c.Mounts {
			if m.Type == mount.TypeBind {
				out = append(out, envs.HostBind{Container: name, Source: m.Source, RW: m.RW})
			}
		}
	}
	return out, nil
}

// Remove removes a container (stopping it if needed) and its anonymous
// volumes; a container already gone is not an error.
func (e *Engine) Remove(ctx context.Context, id string) error {
	e.mu.Lock()
	delete(e.pending, id)
	e.mu.Unlock()
	rctx, cancel := within(ctx, e.Timeouts.Remove)
	defer cancel()
	err := e.c.ContainerRemove(rctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !client.IsErrNotFound(err) && !isRemovalInProgress(err) {
		return e.classifyAt(ctx, fmt.Errorf("remove container %s: %w", short(id), err))
	}
	return nil
}

// health reads the health the engine appends to a container's status
// ("Up 3 minutes (healthy)", "Up 2 seconds (health: starting)").
func health(status string) string {
	switch {
	case strings.HasSuffix(status, "(healthy)"):
		return "healthy"
	case strings.HasSuffix(status, "(unhealthy)"):
		return "unhealthy"
	case strings.HasSuffix(status, "(health: starting)"):
		return "starting"
	}
	return ""
}

// isRemovalInProgress: another remove of the same container (the engine's
// own, after a restart; a concurrent cleanup) is already under way.
func isRemovalInProgress(err error) bool {
	return strings.Contains(err.Error(), "is already in progress")
}
