package fleet

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// The key layout (docs/fleet.md has the table). P is Config.Prefix, E the
// env. Lease-bound keys vanish with their agent's session; all others are
// permanent and written by compare-and-swap.
//
//	P/E/hosts/<host>                 lease  host state, written on change
//	P/E/seen/<host>                  perm   last seen, written rarely
//	P/E/ctl/pause                    perm   fleet-wide pause {by, at, reason}
//	P/E/ctl/retry                    perm   retry generation {by, at}
//	P/E/ctl/rollback                 perm   fleet-wide rollback {commit, head, by, at}
//	P/E/ctl/epoch                    perm   the rollout epoch (its mod revision): grows with every retry and fleet rollback
//	P/E/good                         perm   the fleet's last good revision
//	P/E/halt/<rev>                   perm   the revision is halted fleet-wide
//	P/E/latest                       perm   the newest attempt {attempt, revision}: an older one's gate is moot
//	P/E/rollout/<rev>@<epoch>        perm   one attempt of a revision: its wave record (canaries, max_parallel)
//	P/E/rollout/<att>/creating       lease  the host making the record
//	P/E/rollout/<att>/done/<host>    perm   the host's result in the attempt
//	P/E/rollout/<att>/pausing        perm   the canaries passed; the pause began
//	P/E/rollout/<att>/pause          lease  the pause timer (a lease never kept alive)
//	P/E/rollout/<att>/promoted       perm   the canary gate is open
//	P/E/slot/<i>                     lease  a deploy slot, 0 <= i < max_parallel
//	P/E/queue/<lease>-<n>            lease  a host waiting for a slot
//	P/E/migrate/<id>/state           perm   running | done | failed | interrupted
//	P/E/migrate/<id>/lock/<lease>    lease  the migration's lock queue
//	P/E/job/<name>/last              perm   the latest scheduled time claimed
//	P/E/job/<name>/run/<T>           perm   the claim and run record of time T
//	P/E/job/<name>/active/<T>        lease  the runner of T is alive
type keys struct {
	root string // P/E
}

func (c *Client) keys(env string) keys { return keys{root: c.cfg.Prefix + "/" + seg(env)} }

func seg(s string) string { return url.PathEscape(s) }

func (k keys) hosts() string             { return k.root + "/hosts/" }
func (k keys) host(h string) string      { return k.hosts() + seg(h) }
func (k keys) seens() string             { return k.root + "/seen/" }
func (k keys) seen(h string) string      { return k.seens() + seg(h) }
func (k keys) ctl() string               { return k.root + "/ctl/" }
func (k keys) pause() string             { return k.ctl() + "pause" }
func (k keys) retry() string             { return k.ctl() + "retry" }
func (k keys) rollbackCtl() string       { return k.ctl() + "rollback" }
func (k keys) epoch() string             { return k.ctl() + "epoch" }
func (k keys) good() string              { return k.root + "/good" }
func (k keys) halts() string             { return k.root + "/halt/" }
func (k keys) halt(rev string) string    { return k.halts() + seg(rev) }
func (k keys) latest() string            { return k.root + "/latest" }
func (k keys) rollouts() string          { return k.root + "/rollout/" }
func (k keys) rollout(att string) string { return k.rollouts() + att }
func (k keys) creating(att string) string {
	return k.rollout(att) + "/creating"
}
func (k keys) dones(att string) string   { return k.rollout(att) + "/done/" }
func (k keys) done(att, h string) string { return k.dones(att) + seg(h) }
func (k keys) pausing(att string) string { return k.rollout(att) + "/pausing" }
func (k keys) pauseTimer(att string) string {
	return k.rollout(att) + "/pause"
}
func (k keys) promoted(att string) string { return k.rollout(att) + "/promoted" }
func (k keys) slots() string              { return k.root + "/slot/" }
func (k keys) slot(i int) string          { return fmt.Sprintf("%s%06d", k.slots(), i) }
func (k keys) queue() string              { return k.root + "/queue/" }
func (k keys) migration(id string) string { return k.root + "/migrate/" + id }
func (k keys) migState(id string) string  { return k.migration(id) + "/state" }
func (k keys) migLock(id string) string   { return k.migration(id) + "/lock/" }
func (k keys) job(name string) string     { return k.root + "/job/" + seg(name) }
func (k keys) jobLast(name string) string { return k.job(name) + "/last" }
func (k keys) jobRuns(name string) string { return k.job(name) + "/run/" }
func (k keys) jobRun(name string, t time.Time) string {
	return k.jobRuns(name) + timeKey(t)
}
func (k keys) jobActive(name string, t time.Time) string {
	return k.job(name) + "/active/" + timeKey(t)
}

// attemptID names one attempt of rev: a rollout is one attempt of one
// revision, and a retry or a fleet rollback (which grow the epoch) starts a
// new attempt, canary first again, even of a revision rolled out before.
func attemptID(rev string, epoch int64) string { return seg(rev) + "@" + strconv.FormatInt(epoch, 10) }

// timeKey is a fixed-width UTC form of t, so keys sort by time.
func timeKey(t time.Time) string { return t.UTC().Format(timeKeyLayout) }

const timeKeyLayout = "20060102T150405.000000000Z"
