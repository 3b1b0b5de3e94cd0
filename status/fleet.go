package status

import (
	"context"
	"errors"
	"sync"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/failure"
)

// FleetEnv is one env of `berth fleet status --format json` and
// /api/fleet.
type FleetEnv struct {
	Env      string              `json:"env"`
	Hosts    []fleet.HostStatus  `json:"hosts"`
	Paused   *fleet.PauseInfo    `json:"paused,omitempty"`
	Rollback *fleet.RollbackInfo `json:"rollback,omitempty"`
	Halts    []fleet.Halt        `json:"halts,omitempty"`
	Good     *fleet.Good         `json:"good,omitempty"`
	// Migrations are the fleet's migration records, newest first.
	Migrations []fleet.MigrationState `json:"migrations,omitempty"`
}

// Fleet reads every host of each env, and the env's fleet-wide controls,
// halts and migrations.
func Fleet(ctx context.Context, c *fleet.Client, names []string) ([]FleetEnv, error) {
	var out []FleetEnv
	for _, env := range names {
		hosts, err := c.List(ctx, env)
		if err != nil {
			return nil, EtcdErr(err)
		}
		e := FleetEnv{Env: env, Hosts: hosts}
		if ctl, err := c.Control(ctx, env); err == nil {
			e.Paused, e.Rollback = ctl.Pause, ctl.Rollback
		}
		e.Halts, _ = c.Halts(ctx, env)
		e.Good, _ = c.GoodRevision(ctx, env)
		e.Migrations, _ = c.Migrations(ctx, env)
		out = append(out, e)
	}
	return out, nil
}

// EtcdErr says plainly that etcd did not answer (once, however often it
// is called on the way up).
func EtcdErr(err error) error {
	var said etcdUnreachable
	if errors.As(err, &said) || !failure.IsOutage(err) {
		return err
	}
	return etcdUnreachable{err}
}

type etcdUnreachable struct{ err error }

func (e etcdUnreachable) Error() string { return "etcd unreachable: " + e.err.Error() }
func (e etcdUnreachable) Unwrap() error { return e.err }

// FleetCache is /api/fleet and the hosts-by-revision metric: the fleet's
// hosts, read from etcd at most every FleetCacheFor.
type FleetCache struct {
	C     *fleet.Client
	Names []string

	mu   sync.Mutex
	at   time.Time
	data []FleetEnv
	err  error
}

// FleetCacheFor is how long a FleetCache reuses what it read.
const FleetCacheFor = 10 * time.Second

// Get is the fleet, read at most every FleetCacheFor.
func (f *FleetCache) Get(ctx context.Context) ([]FleetEnv, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.at.IsZero() && time.Since(f.at) < FleetCacheFor {
		return f.data, f.err
	}
	f.data, f.err = Fleet(ctx, f.C, f.Names)
	f.at = time.Now()
	return f.data, f.err
}

// HostsByRevision counts the alive hosts of each env by live revision.
func HostsByRevision(data []FleetEnv) map[[2]string]int {
	out := map[[2]string]int{}
	for _, e := range data {
		for _, h := range e.Hosts {
			if !h.Alive {
				continue
			}
			rev := "none"
			if h.Live != nil {
				rev = h.Live.Revision
			}
			out[[2]string{e.Env, rev}]++
		}
	}
	return out
}

// FleetAll is `berth fleet status --format json` and /api/fleet.
type FleetAll struct {
	Envs []FleetEnv `json:"envs"`
}
