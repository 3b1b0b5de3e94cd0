// Package preview computes what a change to the config repository will do,
// before it merges and without a host: for two revisions of a checkout
// (`berth plan --repo DIR --from REF --to REF`), per env, the services
// replaced, created or removed and why, the migrations that will run, the
// jobs added, removed or changed, the policy verdicts `berth validate`
// gives, and a fleet's rollout waves. It renders text, Markdown (for a PR
// comment: every string from the repository is escaped) and JSON.
//
// It plans with the agent's own code: envs.Load for the desired state and
// policy, reconcile.Plan for the actions (the from revision stands for the
// host, every container of it running and healthy), migrate.LedgerKey for
// the migrations that run once per image and command, and
// fleet.ParseMaxParallel for the waves. What it cannot know without a host
// it says: secret values (a new Vault version redeploys too), containers
// that died or were edited by hand.
package preview

import "berth.dev/berth/envs"

// Report is the plan of one change.
type Report struct {
	From Commit      `json:"from"`
	To   Commit      `json:"to"`
	Envs []EnvReport `json:"envs"`
	// Unchanged lists the envs the change does not touch.
	Unchanged []string `json:"unchanged,omitempty"`
}

// Commit is one side of the change.
type Commit struct {
	Ref     string `json:"ref"`
	ID      string `json:"id"`
	Subject string `json:"subject"`
}

// Env states.
const (
	EnvChanged   = "changed"
	EnvAdded     = "added"   // only in --to
	EnvRemoved   = "removed" // only in --from
	EnvInvalid   = "invalid" // --to fails validation: agents refuse it
	EnvUnchanged = "unchanged"
)

// EnvReport is what the change does to one env.
type EnvReport struct {
	Env   string `json:"env"`
	State string `json:"state"`
	// Files changed under envs/<env>/ (shared files included by the env
	// show as changes of its desired state, not here).
	Files []string `json:"files,omitempty"`
	// Problems are the validation and policy verdicts on --to, as berth
	// validate prints them; any makes the command exit 1.
	Problems envs.Problems `json:"problems,omitempty"`
	// Error is an env that could not be read at all at --to.
	Error string `json:"error,omitempty"`
	// FromError: the env did not load at --from (every service then
	// shows as created).
	FromError  string          `json:"from_error,omitempty"`
	Services   []ServiceChange `json:"services,omitempty"`
	Migrations []OneShot       `json:"migrations,omitempty"`
	CLI        []OneShot       `json:"cli,omitempty"`
	Jobs       []JobChange     `json:"jobs,omitempty"`
	Rollout    *Rollout        `json:"rollout,omitempty"`
	// Notes say what the plan cannot know.
	Notes []string `json:"notes,omitempty"`
}

// ServiceChange is one long-running service that changes.
type ServiceChange struct {
	Service string    `json:"service"`
	Role    envs.Role `json:"role"`
	// Action is create, replace or remove (reconcile's kinds).
	Action string `json:"action"`
	// Reasons say why: the image digest, config fields, secret
	// references, mounted files, replicas.
	Reasons  []string `json:"reasons"`
	Image    string   `json:"image,omitempty"`
	Replicas int      `json:"replicas,omitempty"`
}

// OneShot is a migrate or cli service the deploy runs.
type OneShot struct {
	Service string   `json:"service"`
	Image   string   `json:"image"`
	Command []string `json:"command,omitempty"`
	// Runs is false for a migration that already ran for this image and
	// command (at --from): the agent's ledger skips it.
	Runs   bool   `json:"runs"`
	Reason string `json:"reason"`
}

// JobChange is one scheduled job added, removed or changed.
type JobChange struct {
	Job     string   `json:"job"`
	Action  string   `json:"action"` // added, removed, changed
	Changes []string `json:"changes,omitempty"`
	// Schedule at --to (--from for a removed job).
	Schedule string `json:"schedule"`
}

// Rollout is a fleet's rollout of --to: x-berth.rollout, and with a
// known number of hosts the waves it makes.
type Rollout struct {
	Canary      int    `json:"canary"`
	MaxParallel string `json:"max_parallel,omitempty"`
	Pause       string `json:"pause,omitempty"`
	Hosts       int    `json:"hosts,omitempty"`
	// Waves are the number of hosts deploying in each step (canaries
	// first), when Hosts is known.
	Waves []int `json:"waves,omitempty"`
}

// Failed reports whether any env at --to has a verdict: the exit code of
// berth plan for CI.
func (r *Report) Failed() bool {
	for _, e := range r.Envs {
		if len(e.Problems) > 0 || e.Error != "" {
			return true
		}
	}
	return false
}
