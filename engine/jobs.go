package engine

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"berth.dev/berth/envs"
)

// Labels of a scheduled job's run container. They carry no berth.env label:
// a run is not part of the environment's desired state, and a deploy never
// touches it.
const (
	LabelJobEnv = "berth.job-env"
	LabelJob    = "berth.job"
	LabelRun    = "berth.job-run"
)

// JobPlacement says where one run of a job belongs.
type JobPlacement struct {
	Project  string
	Env      string
	Revision string
	Job      string
	Run      string // run id
	// SecretEnv holds resolved secrets as NAME=value, for Docker only.
	SecretEnv []string
	// SecretFiles holds resolved secret files as name=value.
	SecretFiles []string
}

// JobRequest builds the container of one run of job: the inherited service's
// container (image, env, volumes, networks, limits) or a bare one for a job
// with its own image, with the job's command and environment on top. A run
// publishes no ports, runs no healthcheck and never restarts.
func JobRequest(p *types.Project, svc *envs.Service, job envs.JobSpec, pl JobPlacement) (*Request, error) {
	var s envs.Service
	if svc != nil {
		s = *svc
		s.Config.Environment = maps.Clone(svc.Config.Environment)
	} else {
		s = envs.Service{Name: job.Name, Config: types.ServiceConfig{Name: job.Name}}
		s.Config.NetworkMode, s.Config.Networks = jobNetwork(p)
	}
	if job.Image != "" {
		s.Config.Image = job.Image
	}
	if len(job.Command) > 0 {
		s.Config.Command = job.Command
	}
	if s.Config.Environment == nil {
		s.Config.Environment = types.MappingWithEquals{}
	}
	for k, v := range job.Environment {
		s.Config.Environment[k] = &v
	}
	s.Config.Ports, s.Config.Restart, s.Config.ContainerName, s.Config.Hostname = nil, "no", "", ""
	s.Config.HealthCheck = &types.HealthCheckConfig{Disable: true}
	s.Berth.Port = 0
	req, err := CreateRequest(p, s, Placement{Project: pl.Project, Env: pl.Env, Revision: pl.Revision, SecretEnv: pl.SecretEnv, SecretFiles: pl.SecretFiles, OneOff: true})
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.Name, err)
	}
	labels := req.Config.Labels
	for _, k := range []string{LabelEnv, LabelService, LabelRole, LabelSlot, LabelConfigHash, composeNumber, composeConfigHash} {
		delete(labels, k)
	}
	labels[LabelJobEnv], labels[LabelJob], labels[LabelRun], labels[composeService] = pl.Env, job.Name, pl.Run, job.Name
	req.Name = fmt.Sprintf("%s-job-%s-%s", pl.Project, job.Name, pl.Run)
	if len(req.Name) > 200 {
		req.Name = req.Name[:200]
	}
	return req, nil
}

// jobNetwork is where a job with its own image runs: the project's default
// network, else its first network of its own (sorted by name), else no
// network at all — never Docker's shared bridge, where other projects'
// containers are.
func jobNetwork(p *types.Project) (mode string, nets map[string]*types.ServiceNetworkConfig) {
	if _, ok := p.Networks["default"]; ok {
		return "", nil
	}
	for _, k := range slices.Sorted(maps.Keys(p.Networks)) {
		if !bool(p.Networks[k].External) {
			return "", map[string]*types.ServiceNetworkConfig{k: nil}
		}
	}
	return "none", nil
}

// JobContainer is a run container found on the host.
type JobContainer struct {
	ID    string
	Job   string
	Run   string
	State string
}

// ListJobRuns returns env's job run containers, whatever their state.
func (e *Engine) ListJobRuns(ctx context.Context, env string) ([]JobContainer, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	cs, err := e.c.ContainerList(cctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelJobEnv+"="+env))})
	if err != nil {
		return nil, classify(fmt.Errorf("list job containers of %s: %w", env, err))
	}
	out := make([]JobContainer, 0, len(cs))
	for _, c := range cs {
		out = append(out, JobContainer{ID: c.ID, Job: c.Labels[LabelJob], Run: c.Labels[LabelRun], State: c.State})
	}
	return out, nil
}

// Kill sends SIGKILL; a container already stopped or gone is not an error.
func (e *Engine) Kill(ctx context.Context, id string) error {
	ctx, cancel := e.call(ctx)
	defer cancel()
	err := e.c.ContainerKill(ctx, id, "KILL")
	if err != nil && !client.IsErrNotFound(err) && !isNotRunning(err) {
		return classify(fmt.Errorf("kill container %s: %w", short(id), err))
	}
	return nil
}

func isNotRunning(err error) bool {
	return strings.Contains(err.Error(), "is not running")
}

// Logs returns the last max bytes of a container's stdout and of its stderr,
// and how many earlier bytes of each were dropped.
func (e *Engine) Logs(ctx context.Context, id string, max int) (stdout, stderr []byte, dropped [2]int64, err error) {
	ctx, cancel := within(ctx, e.Timeouts.Remove)
	defer cancel()
	rc, err := e.c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return nil, nil, dropped, classify(fmt.Errorf("logs of %s: %w", short(id), err))
	}
	defer rc.Close()
	out, errb := &TailBuffer{Max: max}, &TailBuffer{Max: max}
	if _, err := stdcopy.StdCopy(out, errb, rc); err != nil && err != io.EOF {
		return out.Bytes(), errb.Bytes(), [2]int64{out.Dropped(), errb.Dropped()}, classify(fmt.Errorf("logs of %s: %w", short(id), err))
	}
	return out.Bytes(), errb.Bytes(), [2]int64{out.Dropped(), errb.Dropped()}, nil
}

// TailBuffer keeps the last Max bytes written to it.
type TailBuffer struct {
	Max   int
	total int64
	buf   []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.total += int64(len(p))
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.Max { // compact now and then, not on every write
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.Max:]...)
	}
	return len(p), nil
}

// Bytes returns what is kept.
func (t *TailBuffer) Bytes() []byte {
	if len(t.buf) > t.Max {
		return t.buf[len(t.buf)-t.Max:]
	}
	return t.buf
}

// Dropped is how many bytes were written but are no longer kept.
func (t *TailBuffer) Dropped() int64 { return t.total - int64(len(t.Bytes())) }
