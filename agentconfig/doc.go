// Package agentconfig owns the agent's own configuration,
// /etc/berth/agent.yaml (DESIGN.md §3): its schema, its defaults (all in
// defaults.go), and its reading: strict (an unknown key is a problem,
// with the key it probably meant), every problem at once as one list of
// field-named lines, then one validator per section. Only env (or envs)
// and repo.url are required.
//
// It also names where each env's state lives in the state dir
// (Config.EnvDir, through package statedir) and reads the policy part of
// an agent.yaml for `berth validate --policy`.
package agentconfig
