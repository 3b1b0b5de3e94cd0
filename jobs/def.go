package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/imagesig"
)

// Runner is what a run needs of the Docker engine (*engine.Engine): its
// image and project present, then a one-shot container (engine.RunOnce,
// the runner migrations use too).
type Runner interface {
	EnsureImage(ctx context.Context, ref string) (pulled bool, err error)
	EnsureProject(ctx context.Context, p *types.Project) error
	RunOnce(ctx context.Context, req *engine.Request, o engine.OneShot) (*engine.RunResult, error)
}

// Reaper is what clearing up after a killed agent needs of the Docker
// engine (*engine.Engine): the env's run containers, stopped, their
// output kept, removed.
type Reaper interface {
	ListJobRuns(ctx context.Context, env string) ([]engine.JobContainer, error)
	Kill(ctx context.Context, id string) error
	Logs(ctx context.Context, id string, max int) (stdout, stderr []byte, dropped [2]int64, err error)
	Remove(ctx context.Context, id string) error
}

// Secrets resolves the inherited service's secrets for a run (the same
// resolver deploys use; values go to Docker only).
type Secrets interface {
	Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) (env []string, digest string, err error)
}

// Signatures checks an image's signature (*imagesig.Verifier); env holds
// the environment's own rules.
type Signatures interface {
	Check(ctx context.Context, ref string, env *imagesig.Policy) error
}

// Causes a run is cut short for.
var (
	errReplaced = errors.New("replaced by a newer run (concurrency: replace)")
	errStopping = errors.New("the agent stopped during the run")
)

// Def is a job of the live revision, ready to run.
type Def struct {
	Spec     envs.JobSpec
	Hash     string // changes when anything that affects a run changes
	Revision string
	Schedule *Schedule
	project  *types.Project
	service  *envs.Service    // nil for a job with its own image
	images   *imagesig.Policy // the environment's own signature rules
}

// Image is the image a run uses.
func (d *Def) Image() string {
	if d.Spec.Image != "" {
		return d.Spec.Image
	}
	if d.service != nil {
		return d.service.Config.Image
	}
	return ""
}

// Defs turns an environment's x-berth.jobs into runnable definitions.
func Defs(env *envs.Env, revision string) ([]*Def, error) {
	var out []*Def
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(env.Jobs)) {
		spec := env.Jobs[name]
		sched, err := ParseSchedule(spec.Schedule, spec.Timezone)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", name, err))
			continue
		}
		d := &Def{Spec: spec, Revision: revision, Schedule: sched, project: env.Project, images: env.Images}
		if spec.Service != "" {
			if d.service = env.Service(spec.Service); d.service == nil {
				errs = append(errs, fmt.Errorf("job %s: no service %q", name, spec.Service))
				continue
			}
		}
		h := sha256.New()
		json.NewEncoder(h).Encode(spec)
		if d.service != nil {
			fmt.Fprintf(h, "%s\x00%v\x00%v", d.service.Hash, d.service.Berth.Secrets, d.service.Berth.SecretFiles)
		}
		d.Hash = hex.EncodeToString(h.Sum(nil))[:16]
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}
