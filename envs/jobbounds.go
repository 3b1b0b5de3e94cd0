package envs

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Bounds on an environment's jobs: each run is a container, and each kept
// run keeps up to the scheduler's output tail (1 MiB of stdout and of
// stderr) under the state dir. A repository must not fill the disk or keep
// the engine busy.
const (
	maxJobs = 32
	// maxJobHistory bounds the runs kept, summed over the env's jobs:
	// with 2 MiB of output each, 2 GiB at most.
	maxJobHistory = 1000
	// DefaultMinJobInterval is how often a job may run at most, unless
	// policy.min_job_interval says otherwise.
	DefaultMinJobInterval = 10 * time.Second
	// maxOverlap bounds the runs of a concurrency: allow job that may
	// run at once: its timeout over its interval.
	maxOverlap = 10
)

// checkJobBounds reports jobs beyond the bounds above.
func checkJobBounds(c *collector, jobs map[string]JobSpec, p Policy) {
	if len(jobs) > maxJobs {
		c.top(extKey+".jobs", fmt.Sprintf("%d jobs are more than %d", len(jobs), maxJobs), fmt.Sprintf("berth runs at most %d jobs per environment", maxJobs))
	}
	minInterval := p.MinJobInterval
	if minInterval <= 0 {
		minInterval = DefaultMinJobInterval
	}
	kept := 0
	for _, name := range slices.Sorted(maps.Keys(jobs)) {
		job := jobs[name]
		f := extKey + ".jobs." + name
		kept += job.History
		sched, err := cronParser.Parse(job.Schedule)
		if err != nil {
			continue // reported when parsed
		}
		every := shortestGap(sched)
		if every < minInterval {
			c.top(f+".schedule", fmt.Sprintf("%q runs every %s, more often than every %s", job.Schedule, every, minInterval), "each run is a container: schedule it less often (policy.min_job_interval in /etc/berth/agent.yaml sets the limit)")
			continue
		}
		if job.Concurrency == ConcurrencyAllow {
			switch {
			case job.Timeout <= 0:
				c.top(f+".concurrency", `"allow" without a timeout lets runs pile up`, fmt.Sprintf("set timeout: (at most %d runs may overlap), or use forbid or replace", maxOverlap))
			case job.Timeout > time.Duration(maxOverlap)*every:
				c.top(f+".timeout", fmt.Sprintf("a timeout of %s lets %d runs overlap (every %s, concurrency: allow), more than %d", job.Timeout, int(job.Timeout/every)+1, every, maxOverlap), fmt.Sprintf("at most %s", time.Duration(maxOverlap)*every))
			}
		}
	}
	if kept > maxJobHistory {
		c.top(extKey+".jobs", fmt.Sprintf("the jobs keep %d runs in all, more than %d", kept, maxJobHistory), "lower history: (a run keeps up to 1 MiB of stdout and of stderr; 50 by default)")
	}
}

// shortestGap is the shortest time between two runs of sched over its
// next 500 runs from a fixed instant (@every: its interval).
func shortestGap(sched interface{ Next(time.Time) time.Time }) time.Duration {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	shortest := time.Duration(1<<63 - 1)
	for range 500 {
		next := sched.Next(t)
		if next.IsZero() {
			break
		}
		shortest = min(shortest, next.Sub(t))
		t = next
	}
	return shortest
}
