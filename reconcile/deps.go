package reconcile

import (
	"context"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/imagesig"
	"berth.dev/berth/lb"
	"berth.dev/berth/migrate"
)

// The small interfaces a pass needs. *engine.Engine satisfies the first
// three, *migrate.Runner OneShots, *lb.Nginx and *lb.HAProxy Switcher;
// tests use fakes.
//
// Errors they return may carry a class (internal/failure): a verdict on
// the revision or an outage. What an unmarked error means is decided in
// classes.go. What comes next hooks in here as further small interfaces,
// without reshaping the pass: a fleet's rollout gate (one Admit(ctx,
// commit) before the deploy starts: an etcd outage an outage, a fleet-wide
// halt a verdict), migrations once per fleet behind OneShots, and a host's
// published status fed from Agent.OnProgress and Agent.OnPass.

// Images makes images present.
type Images interface {
	EnsureImage(ctx context.Context, ref string) (pulled bool, err error)
	EnsureProject(ctx context.Context, p *types.Project) error
}

// Signatures checks an image's signature before it is pulled or run
// (*imagesig.Verifier, docs/security.md): a verdict when a rule refuses
// it, an outage when the registry does not answer. env holds the
// environment's own rules, which only add to the host's (nil: none).
type Signatures interface {
	Check(ctx context.Context, ref string, env *imagesig.Policy) error
}

// Containers changes containers.
type Containers interface {
	Create(ctx context.Context, req *engine.Request) (string, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, grace *time.Duration) error
	Remove(ctx context.Context, id string) error
}

// Observer reads the actual state of the host.
type Observer interface {
	List(ctx context.Context, env string) ([]engine.Managed, error)
	WaitHealthy(ctx context.Context, id string, timeout, settle time.Duration) error
	HostPort(ctx context.Context, id, port string) (string, error)
	HasHealthcheck(ctx context.Context, id string) (bool, error)
}

// Secrets resolves a service's x-berth.secrets before anything is touched.
// It returns NAME=value pairs for the container and a digest of the values
// (mixed into the config hash, so a new secret version redeploys); it never
// returns or logs a value anywhere else.
type Secrets interface {
	Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) (env []string, digest string, err error)
}

// OneShots runs the migrate and cli services of a deploy.
type OneShots interface {
	Run(ctx context.Context, jobs []migrate.Job) ([]migrate.Record, error)
}

// Switcher points the load balancer at backends ("127.0.0.1:PORT").
type Switcher interface {
	Switch(ctx context.Context, backends []string) error
}

// Standby is a Switcher that can keep the servers it switches away from
// out of traffic but ready (HAProxy: drained, then in maintenance rather
// than deleted), so that a Switch back to them — a later server's switch
// failing, the watch failing — is instant. Retire removes them once the
// revision is live. *lb.HAProxy is one.
type Standby interface {
	Switcher
	SwitchStandby(ctx context.Context, backends []string) error
	Retire(ctx context.Context) error
}

// Answers is a balancer that counts each server's answers (HAProxy's show
// stat), so the watch can tell a release that starts failing requests.
// *lb.HAProxy is one.
type Answers interface {
	ServerStats(ctx context.Context) ([]lb.ServerStat, error)
}

// Pruner removes images no longer wanted; images in use stay.
type Pruner interface {
	PruneImages(ctx context.Context, keep, candidates []string) (removed []string, err error)
}
