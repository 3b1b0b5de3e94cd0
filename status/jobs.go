package status

import (
	"fmt"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/jobs"
)

// JobRow is one job of `berth jobs list --format json` and /api/jobs.
type JobRow struct {
	Env string `json:"env"`
	jobs.Entry
	Last *jobs.Run `json:"last,omitempty"`
}

// Jobs are the jobs of the envs named, each row naming its env.
func Jobs(cfg *agentconfig.Config, names []string) ([]JobRow, error) {
	rows := []JobRow{}
	for _, env := range names {
		st := cfg.JobStore(env)
		l, err := st.Listing()
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", env, err)
		}
		for _, e := range l.Jobs {
			row := JobRow{Env: env, Entry: e}
			if runs, err := st.Runs(e.Name); err == nil && len(runs) > 0 {
				row.Last = &runs[0]
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}
