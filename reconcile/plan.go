package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
)

// Kind of a planned action.
type Kind string

const (
	Keep    Kind = "keep"
	Create  Kind = "create"
	Replace Kind = "replace"
	Remove  Kind = "remove"
	Run     Kind = "run" // a one-shot (migrate, cli)
)

// Action is what a deploy does to one service, and why.
type Action struct {
	Service string
	Role    envs.Role
	Kind    Kind
	Reason  string
	// Current are the service's containers being kept (one per replica,
	// oldest slot first), or the running ones a replacement switches away
	// from and retires, or those being removed.
	Current []engine.Managed
	// Stale are further containers of the service to remove (leftovers
	// of an interrupted cutover, dead duplicates).
	Stale []engine.Managed
	// Hash is the service's desired config hash (secret digests mixed in).
	Hash string
	// Replicas is how many containers the service runs (1 or more).
	Replicas int
}

func (a Action) String() string {
	if a.Reason == "" {
		return fmt.Sprintf("%s: %s", a.Service, a.Kind)
	}
	return fmt.Sprintf("%s: %s, %s", a.Service, a.Kind, a.Reason)
}

// Plan compares the desired services (with their final hashes) to the
// containers on the host and says, for each service, what to do and why.
// One-shot services run whenever anything else changes; with no change,
// nothing runs. Containers of services no longer in the config are removed.
func Plan(env *envs.Env, hashes map[string]string, actual []engine.Managed) []Action {
	return plan(env, hashes, actual, "")
}

// plan is Plan knowing the live revision: a replacement switches away from
// (and, on failure, back to) the live revision's running containers when
// there are any, never to containers of a revision that never went live
// (an interrupted deploy's, which are stale).
func plan(env *envs.Env, hashes map[string]string, actual []engine.Managed, live string) []Action {
	byService := map[string][]engine.Managed{}
	for _, m := range actual {
		if !m.OneOff {
			byService[m.Service] = append(byService[m.Service], m)
		}
	}
	var actions []Action
	changed := false
	for _, s := range env.Services {
		if s.Berth.Role == envs.RoleMigrate || s.Berth.Role == envs.RoleCLI {
			continue
		}
		a := Action{Service: s.Name, Role: s.Berth.Role, Hash: hashes[s.Name], Replicas: max(s.Berth.Replicas, 1)}
		planService(&a, s, byService[s.Name], live)
		if a.Kind != Keep || len(a.Stale) > 0 {
			changed = true
		}
		actions = append(actions, a)
		delete(byService, s.Name)
	}
	for _, name := range slices.Sorted(maps.Keys(byService)) {
		ms := byService[name]
		changed = true
		actions = append(actions, Action{Service: name, Role: envs.Role(ms[0].Role), Kind: Remove, Reason: "no longer in the config", Current: ms})
	}
	if !changed {
		return actions
	}
	var oneShots []Action
	for _, s := range env.Services {
		if s.Berth.Role == envs.RoleMigrate || s.Berth.Role == envs.RoleCLI {
			oneShots = append(oneShots, Action{Service: s.Name, Role: s.Berth.Role, Kind: Run, Hash: hashes[s.Name], Replicas: 1, Reason: "runs with every deploy that changes something"})
		}
	}
	return append(oneShots, actions...)
}

// planService decides one service. Its containers are kept when at least
// Replicas of them run the desired config and passed their health gate
// (running, healthy or without a HEALTHCHECK): the newest Replicas of them
// stay, the rest are stale. Otherwise a whole new set replaces the running
// ones: a container that is not running, or whose health is starting or
// unhealthy, never passed its gate (an agent killed mid-cutover) or failed
// it since, and is not one to keep.
func planService(a *Action, s envs.Service, ms []engine.Managed, live string) {
	var good []engine.Managed
	for _, m := range ms {
		if m.State == "running" && m.ConfigHash == a.Hash && (m.Health == "healthy" || m.Health == "") {
			good = append(good, m)
		}
	}
	if len(good) >= a.Replicas {
		a.Kind = Keep
		a.Current = good[len(good)-a.Replicas:]
		a.Stale = others(ms, a.Current)
		if len(a.Stale) > 0 {
			a.Reason = fmt.Sprintf("remove %d stale container(s)", len(a.Stale))
		}
		return
	}
	if len(ms) == 0 {
		a.Kind, a.Reason = Create, "no container"
		return
	}
	a.Kind = Replace
	// The containers the replacement switches away from: running ones that
	// passed their gate, the live revision's if any are.
	var serving, ofLive []engine.Managed
	for _, m := range ms {
		if m.State == "running" && m.Health != "unhealthy" && m.Health != "starting" && m.Health != healthPortLost {
			serving = append(serving, m)
			if live != "" && m.Revision == live {
				ofLive = append(ofLive, m)
			}
		}
	}
	if len(ofLive) > 0 {
		serving = ofLive
	}
	a.Current, a.Stale = serving, others(ms, serving)
	// The reason, from the newest running container (else the newest).
	ref := ms[len(ms)-1]
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].State == "running" {
			ref = ms[i]
			break
		}
	}
	switch {
	case ref.ConfigHash != a.Hash:
		a.Reason = why(&ref, s, a.Hash)
	case ref.State != "running":
		a.Reason = "container " + ref.State
	case ref.Health == healthPortLost:
		a.Reason = "its published port refuses connections (lost by Docker)"
	case ref.Health == "unhealthy" || ref.Health == "starting":
		a.Reason = "container " + ref.Health
	default:
		a.Reason = fmt.Sprintf("%d of %d replicas running", len(good), a.Replicas)
	}
}

// others are the containers of ms not in keep.
func others(ms, keep []engine.Managed) []engine.Managed {
	var out []engine.Managed
	for _, m := range ms {
		if !slices.ContainsFunc(keep, func(k engine.Managed) bool { return k.ID == m.ID }) {
			out = append(out, m)
		}
	}
	return out
}

// Changes reports whether a plan does anything.
func Changes(actions []Action) bool {
	for _, a := range actions {
		if a.Kind != Keep || len(a.Stale) > 0 {
			return true
		}
	}
	return false
}

// why explains a replacement: the image digest when it changed, else the
// config hash.
func why(cur *engine.Managed, s envs.Service, hash string) string {
	if cur.Image != s.Config.Image {
		return fmt.Sprintf("image digest changed %s→%s", shortDigest(cur.Image), shortDigest(s.Config.Image))
	}
	if len(s.Berth.Secrets)+len(s.Berth.SecretFiles) > 0 {
		// The hash mixes in unsalted digests of the secret values: even a
		// prefix of it, in records that reach the API, notifications and
		// the fleet, would let whoever reads the repository confirm a
		// guess of a weak secret offline. The spec hash holds none.
		switch {
		case cur.SpecHash == "":
			return "config or secrets changed"
		case cur.SpecHash == s.Hash:
			return "secrets changed"
		}
		return fmt.Sprintf("config changed (hash %s→%s)", shortHash(cur.SpecHash), shortHash(s.Hash))
	}
	return fmt.Sprintf("config changed (hash %s→%s)", shortHash(cur.ConfigHash), shortHash(hash))
}

func shortDigest(image string) string {
	_, d, ok := strings.Cut(image, "@")
	if !ok {
		return image
	}
	if len(d) > 19 {
		d = d[:19] + "…"
	}
	return d
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
