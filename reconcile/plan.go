package reconcile

import (
	"fmt"
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
	// Current is the running container being kept, replaced or removed.
	Current *engine.Managed
	// Stale are further containers of the service to remove (leftovers
	// of an interrupted cutover, dead duplicates).
	Stale []engine.Managed
	// Hash is the service's desired config hash (secret digests mixed in).
	Hash string
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
		a := Action{Service: s.Name, Role: s.Berth.Role, Hash: hashes[s.Name]}
		cur, stale := pickCurrent(byService[s.Name], a.Hash)
		a.Current, a.Stale = cur, stale
		switch {
		case cur == nil:
			a.Kind, a.Reason = Create, "no container"
		case cur.ConfigHash != a.Hash:
			a.Kind, a.Reason = Replace, why(cur, s, a.Hash)
		case cur.State != "running":
			a.Kind, a.Reason = Replace, "container "+cur.State
		case cur.Health == "unhealthy" || cur.Health == "starting":
			// Never passed its health gate (an agent killed mid-cutover)
			// or failed it since: not a container to keep.
			a.Kind, a.Reason = Replace, "container "+cur.Health
		default:
			a.Kind = Keep
			if len(stale) > 0 {
				a.Reason = fmt.Sprintf("remove %d stale container(s)", len(stale))
			}
		}
		if a.Kind != Keep || len(stale) > 0 {
			changed = true
		}
		actions = append(actions, a)
		delete(byService, s.Name)
	}
	for name, ms := range byService {
		changed = true
		actions = append(actions, Action{Service: name, Role: envs.Role(ms[0].Role), Kind: Remove, Reason: "no longer in the config", Current: &ms[len(ms)-1], Stale: ms[:len(ms)-1]})
	}
	if !changed {
		return actions
	}
	var oneShots []Action
	for _, s := range env.Services {
		if s.Berth.Role == envs.RoleMigrate || s.Berth.Role == envs.RoleCLI {
			oneShots = append(oneShots, Action{Service: s.Name, Role: s.Berth.Role, Kind: Run, Hash: hashes[s.Name], Reason: "runs with every deploy that changes something"})
		}
	}
	return append(oneShots, actions...)
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

// pickCurrent chooses the container a service runs on: the healthy (or
// health-less) running one with the desired hash if any, else the newest
// running one, else the newest. The others are stale.
func pickCurrent(ms []engine.Managed, hash string) (*engine.Managed, []engine.Managed) {
	if len(ms) == 0 {
		return nil, nil
	}
	best := -1
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].State == "running" && ms[i].ConfigHash == hash && (ms[i].Health == "healthy" || ms[i].Health == "") {
			best = i
			break
		}
	}
	for i := len(ms) - 1; best < 0 && i >= 0; i-- {
		if ms[i].State == "running" {
			best = i
		}
	}
	if best < 0 {
		best = len(ms) - 1
	}
	cur := ms[best]
	var stale []engine.Managed
	for i, m := range ms {
		if i != best {
			stale = append(stale, m)
		}
	}
	return &cur, stale
}

// why explains a replacement: the image digest when it changed, else the
// config hash.
func why(cur *engine.Managed, s envs.Service, hash string) string {
	if cur.Image != s.Config.Image {
		return fmt.Sprintf("image digest changed %s→%s", shortDigest(cur.Image), shortDigest(s.Config.Image))
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
