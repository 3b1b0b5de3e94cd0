package envs

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRollout_FleetKeysAndTheirMessages(t *testing.T) {
	const f = "envs/prod/compose.yaml"
	img := "r/app@" + d1
	job := func(extra string) string {
		return "services:\n  w: {image: " + img + "}\nx-berth:\n  jobs:\n    nightly: {schedule: '@daily', service: w" + extra + "}\n"
	}
	tests := []struct {
		name    string
		compose string
		want    []string
		check   func(t *testing.T, env *Env)
	}{
		{
			name:    "a rollout with every key",
			compose: "services:\n  w: {image: " + img + "}\nx-berth:\n  rollout: {canary: 1, max_parallel: 25%, pause: 2m}\n",
			check: func(t *testing.T, env *Env) {
				if r := env.Rollout; r == nil || r.Canary != 1 || r.MaxParallel != "25%" || r.Pause != 2*time.Minute {
					t.Fatalf("rollout %+v", env.Rollout)
				}
			},
		},
		{
			name:    "max_parallel as a number",
			compose: "services:\n  w: {image: " + img + "}\nx-berth:\n  rollout: {max_parallel: 2}\n",
			check: func(t *testing.T, env *Env) {
				if r := env.Rollout; r == nil || r.Canary != 0 || r.MaxParallel != "2" {
					t.Fatalf("rollout %+v", env.Rollout)
				}
			},
		},
		{
			name:    "no rollout",
			compose: "services:\n  w: {image: " + img + "}\n",
			check: func(t *testing.T, env *Env) {
				if env.Rollout != nil {
					t.Fatalf("rollout %+v", env.Rollout)
				}
			},
		},
		{
			name:    "bad rollout values",
			compose: "services:\n  w: {image: " + img + "}\nx-berth:\n  rollout: {canary: -1, max_parallel: 0, pause: 48h, wave: 2}\n",
			want: []string{
				f + `::x-berth.rollout.canary: -1 canary hosts is out of range (from 0 (no canary) to 100 hosts)`,
				f + `::x-berth.rollout.max_parallel: max_parallel "0" is neither a number of hosts (at least 1) nor a percentage (a number of hosts (2) or a percentage of the fleet ("25%"))`,
				f + `::x-berth.rollout.pause: 48h0m0s is longer than 24h0m0s (the other hosts wait this long after the canaries: minutes, not days)`,
				f + `::x-berth.rollout.wave: unknown key "wave" (known keys: canary, max_parallel, pause)`,
			},
		},
		{
			name:    "a percentage above 100",
			compose: "services:\n  w: {image: " + img + "}\nx-berth:\n  rollout: {max_parallel: 120%}\n",
			want:    []string{f + `::x-berth.rollout.max_parallel: max_parallel "120%": a percentage must be more than 0% and at most 100% (a number of hosts (2) or a percentage of the fleet ("25%"))`},
		},
		{
			name:    "an idempotent migration",
			compose: "services:\n  m:\n    image: " + img + "\n    x-berth: {role: migrate, migration: {idempotent: true}}\n",
			check: func(t *testing.T, env *Env) {
				if !env.Service("m").Berth.Migration.Idempotent {
					t.Fatal("idempotent not read")
				}
			},
		},
		{
			name:    "migration on a worker, and a bad key",
			compose: "services:\n  w:\n    image: " + img + "\n    x-berth: {migration: {idempotent: true}}\n  m:\n    image: " + img + "\n    x-berth: {role: migrate, migration: {idempotent: yes, once: true}}\n",
			want: []string{
				f + `:m:x-berth.migration.idempotent: must be true or false, not yes`,
				f + `:m:x-berth.migration.once: unknown key "once" (known keys: idempotent)`,
				f + `:w:x-berth.migration: a worker service has no migration (set x-berth.role: migrate, or remove x-berth.migration)`,
			},
		},
		{
			name:    "run_on and starting_deadline",
			compose: job(", run_on: all, starting_deadline: 10m"),
			check: func(t *testing.T, env *Env) {
				if j := env.Jobs["nightly"]; j.RunOn != RunOnAll || j.StartingDeadline != 10*time.Minute {
					t.Fatalf("job %+v", j)
				}
			},
		},
		{
			name:    "bad run_on and starting_deadline",
			compose: job(", run_on: some, starting_deadline: 30d"),
			want: []string{
				f + `::x-berth.jobs.nightly.run_on: unknown run_on "some" (one of one, all)`,
				f + `::x-berth.jobs.nightly.starting_deadline: "30d" is not a duration (write e.g. "90s", "30m" or "1h30m")`,
			},
		},
		{
			name:    "a starting deadline beyond a week",
			compose: job(", starting_deadline: 200h"),
			want:    []string{f + `::x-berth.jobs.nightly.starting_deadline: 200h0m0s is longer than 168h0m0s (how late a scheduled time may still start, e.g. 10m)`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, ps := load(t, map[string]string{f: tc.compose}, Options{})
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.check != nil {
				tc.check(t, env)
			}
		})
	}
}

func TestRollout_CheckMaxParallelAcceptsWhatTheFleetParses(t *testing.T) {
	for _, s := range []string{"1", "10", "1%", "25%", "100%", "12.5%"} {
		if err := CheckMaxParallel(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"0", "-1", "0%", "101%", "x", "%", "1.5", "NaN%", "nan%", "Inf%", "+Inf%", "-Inf%"} {
		if err := CheckMaxParallel(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
