package envs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// What a fleet (several hosts running the env, coordinated through etcd;
// docs/fleet.md) reads from the config repo. Without a fleet these keys
// are accepted and have no effect, so one repo serves single hosts and
// fleets alike.

// Rollout is the top-level x-berth.rollout: how a new revision spreads
// over the fleet.
type Rollout struct {
	// Canary hosts deploy a new revision first; the others start once
	// every canary is live on it, plus Pause.
	Canary int
	// MaxParallel is "N" hosts or "P%" of the hosts alive when the
	// revision's rollout starts; "" is no limit.
	MaxParallel string
	Pause       time.Duration
}

// MigrationSpec is a migrate service's x-berth.migration.
type MigrationSpec struct {
	// Idempotent: safe to run twice. When the host running it for the
	// fleet dies mid-run, another host runs it again; without it the
	// migration is interrupted and the fleet halts until `berth retry`.
	Idempotent bool
}

// Job run_on values. "" is the default: one with a fleet (each scheduled
// time runs on one host), every host without.
const (
	RunOnOne = "one"
	RunOnAll = "all"
)

// Bounds of the fleet keys.
const (
	maxCanary           = 100
	maxRolloutPause     = 24 * time.Hour
	maxStartingDeadline = 7 * 24 * time.Hour
)

var rolloutKeys = []string{"canary", "max_parallel", "pause"}

// parseRollout decodes the top-level x-berth.rollout.
func parseRollout(v any, report func(field, msg, hint string)) *Rollout {
	const f = extKey + ".rollout"
	m, ok := asMap(v, f, report)
	if !ok {
		return nil
	}
	fields(m, rolloutKeys, report, f)
	r := &Rollout{}
	if c, ok := m["canary"]; ok {
		r.Canary, _ = asIntIn(c, f+".canary", 0, maxCanary, func(n int) (string, string) {
			return fmt.Sprintf("%d canary hosts is out of range", n), fmt.Sprintf("from 0 (no canary) to %d hosts", maxCanary)
		}, report)
	}
	if p, ok := m["max_parallel"]; ok {
		s := strings.TrimSpace(fmt.Sprint(p))
		if err := CheckMaxParallel(s); err != nil {
			report(f+".max_parallel", err.Error(), `a number of hosts (2) or a percentage of the fleet ("25%")`)
		} else {
			r.MaxParallel = s
		}
	}
	if p, ok := m["pause"]; ok {
		d := asDuration(p, f+".pause", report)
		if d > maxRolloutPause {
			report(f+".pause", fmt.Sprintf("%s is longer than %s", d, maxRolloutPause), "the other hosts wait this long after the canaries: minutes, not days")
			d = 0
		}
		r.Pause = d
	}
	return r
}

// CheckMaxParallel checks "N" (a whole number of hosts, at least 1) or
// "P%" (0 < P <= 100): the forms fleet.ParseMaxParallel reads.
func CheckMaxParallel(s string) error {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || !(v > 0 && v <= 100) { // NaN and ±Inf fail the comparison too
			return fmt.Errorf("max_parallel %q: a percentage must be more than 0%% and at most 100%%", s)
		}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return fmt.Errorf("max_parallel %q is neither a number of hosts (at least 1) nor a percentage", s)
	}
	return nil
}

var migrationKeys = []string{"idempotent"}

// parseMigration decodes a service's x-berth.migration; role is the
// service's role (only a migrate service has one).
func parseMigration(v any, role Role, report func(field, msg, hint string)) MigrationSpec {
	const f = extKey + ".migration"
	var spec MigrationSpec
	m, ok := asMap(v, f, report)
	if !ok {
		return spec
	}
	if role != RoleMigrate {
		report(f, fmt.Sprintf("a %s service has no migration", role), "set x-berth.role: migrate, or remove x-berth.migration")
		return spec
	}
	fields(m, migrationKeys, report, f)
	if i, ok := m["idempotent"]; ok {
		spec.Idempotent = asBool(i, f+".idempotent", report)
	}
	return spec
}

// parseJobFleet decodes a job's run_on and starting_deadline (f is the
// job's field prefix).
func parseJobFleet(m map[string]any, f string, job *JobSpec, report func(field, msg, hint string)) {
	if r, ok := m["run_on"]; ok {
		if s, ok := asEnum(r, f+".run_on", "run_on", []string{RunOnOne, RunOnAll}, report); ok {
			job.RunOn = s
		}
	}
	if d, ok := m["starting_deadline"]; ok {
		v := asDuration(d, f+".starting_deadline", report)
		switch {
		case v > maxStartingDeadline:
			report(f+".starting_deadline", fmt.Sprintf("%s is longer than %s", v, maxStartingDeadline), "how late a scheduled time may still start, e.g. 10m")
		case v > 0 && v < time.Second:
			report(f+".starting_deadline", fmt.Sprintf("%s is shorter than 1s", v), "how late a scheduled time may still start, e.g. 10m")
		default:
			job.StartingDeadline = v
		}
	}
}
