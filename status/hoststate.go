package status

import "berth.dev/berth/fleet"

// HostState is what a host of a fleet is doing, one word, as `berth fleet
// status` and the fleet page both name it.
type HostState string

const (
	HostGone      HostState = "gone"      // its lease lapsed: not seen for a TTL
	HostPaused    HostState = "paused"    // berth pause on the host
	HostHeld      HostState = "held"      // its head is halted fleet-wide
	HostWaiting   HostState = "waiting"   // a deploy waits (its turn, etcd, a migration)
	HostDeploying HostState = "deploying" // a deploy runs
	HostFailed    HostState = "failed"    // it refuses a revision (a verdict)
	HostSkewed    HostState = "skewed"    // its clock is off etcd's by fleet.SkewWarn or more
	HostAlive     HostState = "alive"     // none of the above
)

// HostStates are the states, in the order HostStateOf tries them.
var HostStates = []HostState{HostGone, HostPaused, HostHeld, HostWaiting, HostDeploying, HostFailed, HostSkewed, HostAlive}

// HostStateOf is h's state: the first of HostStates that holds, so what a
// host does now (a deploy) outranks what it did (a refused revision).
func HostStateOf(h *fleet.HostStatus) HostState {
	switch {
	case !h.Alive:
		return HostGone
	case h.Paused != nil:
		return HostPaused
	case h.Held != "":
		return HostHeld
	case h.Waiting != "":
		return HostWaiting
	case h.Deploy != nil:
		return HostDeploying
	case h.Failed != "":
		return HostFailed
	case Skewed(h):
		return HostSkewed
	}
	return HostAlive
}

// Skewed says whether h's clock is off etcd's by fleet.SkewWarn or more
// (its job claims ahead of etcd's clock are refused).
func Skewed(h *fleet.HostStatus) bool { return h.ClockSkew.Abs() >= fleet.SkewWarn }

// Stopped says whether a rollout of e stopped: a revision is halted, or a
// live host refuses one (berth fleet status exits 1).
func (e FleetEnv) Stopped() bool {
	if len(e.Halts) > 0 {
		return true
	}
	for _, h := range e.Hosts {
		if h.Alive && h.Failed != "" {
			return true
		}
	}
	return false
}
