package daemon

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/fleet"
	"berth.dev/berth/fleet/fleetjobs"
	"berth.dev/berth/jobs"
)

// The fleet (docs/fleet.md): with a `fleet:` block, each env's agent
// coordinates with the other hosts that run it through etcd. Without one
// nothing here runs, and no etcd client is ever made.

// newFleet makes the agent's fleet client, or nil without a fleet block.
// It does not wait for etcd: the agent starts and serves while etcd is
// down.
func newFleet(cfg *agentconfig.Config, log hclog.Logger) (*fleet.Client, error) {
	if cfg.Fleet == nil {
		return nil, nil
	}
	return fleet.New(*cfg.Fleet, fleet.Options{Log: log})
}

// withFleetJobs is where the fleet client reaches env's job scheduler:
// run_on: one jobs once per fleet per scheduled time, through the
// fleetjobs adapter (jobs.Fleet). It is called only when a fleet is
// configured.
func withFleetJobs(s *jobs.Scheduler, c *fleet.Client) {
	s.Fleet = fleetjobs.Adapter{C: c}
}

// wireFleet makes env's agent coordinate through the fleet: its pass
// asks the fleet before deploying (reconcile.Fleet), its job scheduler
// gets the fleet (withFleetJobs), and it returns the observer that
// publishes the env's progress and results as this host's state.
func wireFleet(r *envRuntime, d hostDeps, name string) Observer {
	r.agent.Fleet = d.fleet
	r.pub = newHostPublisher(d.fleet, name, r.dir, d.cfg.Journal(name), d.eng, d.version)
	withFleetJobs(r.sched, d.fleet)
	r.pub.publish()
	return r.pub
}

// watchFleetControl triggers a check of every env at once when its
// fleet-wide pause, retry or rollback changes, instead of at the next
// poll.
func watchFleetControl(ctx context.Context, c *fleet.Client, rs []*envRuntime, trigger func()) {
	for _, r := range rs {
		go func() {
			first := true
			for range c.WatchControl(ctx, r.name) {
				if !first {
					r.log.Info("fleet control changed: checking now")
					trigger()
				}
				first = false
			}
		}()
	}
}
