package preview

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
)

// jobChanges lists the scheduled jobs added, removed or changed, and jobs
// that follow a service whose image or config changed.
func jobChanges(from, to *envs.Env) []JobChange {
	var was map[string]envs.JobSpec
	if from != nil {
		was = from.Jobs
	}
	var out []JobChange
	for _, name := range slices.Sorted(maps.Keys(setOf(append(slices.Collect(maps.Keys(was)), slices.Collect(maps.Keys(to.Jobs))...)))) {
		a, inA := was[name]
		b, inB := to.Jobs[name]
		switch {
		case !inA:
			out = append(out, JobChange{Job: name, Action: "added", Schedule: schedule(b)})
		case !inB:
			out = append(out, JobChange{Job: name, Action: "removed", Schedule: schedule(a)})
		default:
			changes := jobFields(a, b)
			if b.Service != "" && a.Service == b.Service {
				if sa, sb := serviceOf(from, a.Service), to.Service(b.Service); sa != nil && sb != nil && sa.Hash != sb.Hash {
					changes = append(changes, "runs service "+b.Service+"'s new image or config")
				}
			}
			if len(changes) > 0 {
				out = append(out, JobChange{Job: name, Action: "changed", Changes: changes, Schedule: schedule(b)})
			}
		}
	}
	return out
}

func schedule(j envs.JobSpec) string {
	if j.Timezone != "" {
		return j.Schedule + " (" + j.Timezone + ")"
	}
	return j.Schedule
}

// jobFields names the fields of a job that differ (the job's environment
// by variable name only).
func jobFields(a, b envs.JobSpec) []string {
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "Name" || reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			continue
		}
		name := snake(f.Name)
		switch f.Name {
		case "Environment":
			var keys []string
			for _, k := range slices.Sorted(maps.Keys(setOf(append(slices.Collect(maps.Keys(a.Environment)), slices.Collect(maps.Keys(b.Environment))...)))) {
				if a.Environment[k] != b.Environment[k] {
					keys = append(keys, k)
				}
			}
			out = append(out, "environment: "+strings.Join(keys, ", "))
		case "Command":
			out = append(out, "command changed")
		default:
			out = append(out, fmt.Sprintf("%s %v → %v", name, orNone(va.Field(i).Interface()), orNone(vb.Field(i).Interface())))
		}
	}
	return out
}

func orNone(v any) any {
	if reflect.ValueOf(v).IsZero() {
		return "(none)"
	}
	return v
}

// snake turns a Go field name into the config key: StartingDeadline →
// starting_deadline.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// rollout describes x-berth.rollout at --to, with the waves it makes over
// hosts when that is known: the canaries first, then at most
// max_parallel hosts at a time (fleet.ParseMaxParallel, as the fleet
// computes it when the rollout starts).
func rollout(r *envs.Rollout, hosts int) *Rollout {
	if r == nil {
		return nil
	}
	out := &Rollout{Canary: r.Canary, MaxParallel: r.MaxParallel, Hosts: hosts}
	if r.Pause > 0 {
		out.Pause = r.Pause.String()
	}
	if hosts <= 0 {
		return out
	}
	canary := min(r.Canary, hosts)
	if canary > 0 {
		out.Waves = append(out.Waves, canary)
	}
	n, err := fleet.ParseMaxParallel(r.MaxParallel, hosts)
	rest := hosts - canary
	if err != nil || n <= 0 {
		n = rest
	}
	for rest > 0 {
		w := min(n, rest)
		out.Waves = append(out.Waves, w)
		rest -= w
	}
	return out
}
