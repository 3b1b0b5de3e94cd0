package agentconfig

import (
	"berth.dev/berth/jobs"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/statedir"
)

// EnvDir is where env's state lives in the state dir (package statedir
// owns the layout).
func (c *Config) EnvDir(env string) string {
	return statedir.EnvDir(c.StateDir, c.EnvNames(), env)
}

// Journal is env's journal of passes.
func (c *Config) Journal(env string) *reconcile.Journal {
	return statedir.Journal(c.EnvDir(env))
}

// JobStore is env's job runs and their output.
func (c *Config) JobStore(env string) *jobs.Store {
	return statedir.Jobs(c.EnvDir(env))
}
