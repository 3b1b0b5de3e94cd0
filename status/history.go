package status

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/reconcile"
)

// History is what `berth history --format json` and /api/history show:
// the newest n records of the envs named, newest first (each record names
// its env).
func History(cfg *agentconfig.Config, names []string, n int) ([]reconcile.Record, error) {
	var recs []reconcile.Record
	var errs []error
	for _, env := range names {
		rs, err := cfg.Journal(env).List()
		if err != nil {
			errs = append(errs, fmt.Errorf("env %s: %w", env, err))
		}
		for i := range rs {
			if rs[i].Env == "" {
				rs[i].Env = env // a record of a pass that ended before the env was known
			}
		}
		recs = append(recs, rs...)
	}
	err := errors.Join(errs...)
	slices.SortStableFunc(recs, func(a, b reconcile.Record) int { return strings.Compare(b.ID, a.ID) })
	if len(recs) > n {
		recs = recs[:max(n, 0)]
	}
	if recs == nil {
		recs = []reconcile.Record{}
	}
	return recs, err
}
