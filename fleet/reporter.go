package fleet

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// The forge reporter role (docs/forge.md): with a fleet, one agent per env
// posts the env's commit statuses, from every host's published state, so
// that a thousand hosts do not each post. The role is an etcd election on
// the agent's session: it moves to another agent when the holder's lease
// ends (dead, partitioned, stopped).

func (k keys) reporter() string { return k.root + "/reporter/" }

// LeadReporter campaigns for env's reporter role and, while this agent
// holds it, runs lead with a context that ends when the role is lost (the
// session ended) or ctx ends; then it campaigns again. It returns when ctx
// ends. etcd unreachable: it waits, with backoff, and holds no role — the
// statuses wait with it, deploys do not.
func (c *Client) LeadReporter(ctx context.Context, env string, lead func(ctx context.Context)) {
	failed := 0
	wait := func() bool {
		failed++
		return sleepOrKick(ctx, nil, retryPolicy.Delay(failed))
	}
	for ctx.Err() == nil {
		sess, err := c.Session(ctx)
		if err != nil {
			if !wait() {
				return
			}
			continue
		}
		held, err := c.holdReporter(ctx, sess, env, lead)
		if held {
			failed = 0
		}
		if err != nil && !wait() {
			return
		}
	}
}

// holdReporter campaigns once on sess and leads until the session or ctx
// ends. Campaign does not notice a session that dies while it waits
// (FLEET-NOTES), so the campaign's context ends with the session.
func (c *Client) holdReporter(ctx context.Context, sess *concurrency.Session, env string, lead func(ctx context.Context)) (bool, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-lctx.Done():
		}
	}()
	el := concurrency.NewElection(sess, c.keys(env).reporter())
	if err := el.Campaign(clientv3.WithRequireLeader(lctx), c.cfg.Host); err != nil {
		return false, c.fail(ctx, "campaign for the reporter role", err)
	}
	c.log.Info("holding the forge reporter role", "env", env)
	lead(lctx)
	c.log.Info("forge reporter role ended", "env", env)
	select {
	case <-sess.Done():
	default:
		rctx, rcancel := c.timeout(context.WithoutCancel(ctx))
		_ = el.Resign(rctx) // let another agent take over at once
		rcancel()
	}
	return true, ctx.Err()
}

// FleetView is what the reporter reads of an env: every host (alive and
// gone) and the fleet-wide halts.
type FleetView struct {
	Hosts []HostStatus
	Halts []Halt
}

// WatchHosts sends env's FleetView now and after every change of a host
// record, a last-seen record or a halt (only the latest waits for a slow
// receiver), until ctx ends. One read per change: a rollout of N hosts
// costs O(N) reads, whatever the poll interval. It sends nothing while
// etcd is unreachable.
func (c *Client) WatchHosts(ctx context.Context, env string) <-chan FleetView {
	k := c.keys(env)
	return watchLatest(ctx, c, func(ctx context.Context) (FleetView, int64, error) {
		// The revision first: a change after it is watched for, one
		// before it is in the reads that follow.
		resp, err := c.get(ctx, k.hosts(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return FleetView{}, 0, err
		}
		var v FleetView
		if v.Hosts, err = c.List(ctx, env); err != nil {
			return v, 0, err
		}
		if v.Halts, err = c.Halts(ctx, env); err != nil {
			return v, 0, err
		}
		return v, resp.Header.Revision, nil
	}, prefixOf(k.hosts()), prefixOf(k.seens()), prefixOf(k.halts()))
}
