package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"berth.dev/berth/fleet"
)

// ending: the end state (nothing "running" with no run behind it, no
// slot held with no deploy behind it), convergence on the last revision,
// and etcd's key count against the budget.
func (c *checker) ending() {
	c.jobActive()
	c.staleActive()
	c.migRunning()
	c.staleSlots()
	if c.in.Converged != nil {
		c.violate("fleet did not converge", c.in.FinalAt, "after the last fault, on %s: %v", c.in.FinalRev, c.in.Converged)
	}
	c.keyBudget()
}

// migRunning: a migration whose state says running while its runner
// holds the lock (lease alive) must have a run going.
func (c *checker) migRunning() {
	started, ended := map[int64]bool{}, map[int64]bool{}
	for _, e := range c.in.Events {
		switch e.Kind {
		case "migrate_start":
			started[e.Token] = true
		case "migrate_end":
			ended[e.Token] = true
		}
	}
	for k, kv := range c.in.Final {
		if !strings.HasPrefix(k, c.in.Root+"migrate/") || !strings.HasSuffix(k, "/state") {
			continue
		}
		var st fleet.MigrationState
		if json.Unmarshal(kv.Value, &st) != nil || st.Status != fleet.MigrationRunning {
			continue
		}
		held := false
		for lk, lkv := range c.in.Final {
			held = held || (strings.HasPrefix(lk, strings.TrimSuffix(k, "state")+"lock/") && lkv.Create == st.Token)
		}
		if held && (!started[st.Token] || ended[st.Token]) {
			c.violate("running with no run behind it", c.in.FinalAt, "migration %s of %s is running under token %d, its runner %s holds the lock, and no run is going",
				st.Service, st.Revision, st.Token, st.Host)
		}
	}
}

// staleSlots: once the fleet has converged, a held deploy slot has no
// deploy behind it.
func (c *checker) staleSlots() {
	if c.in.Converged != nil {
		return // the convergence violation says more
	}
	for k, kv := range c.in.Final {
		if strings.HasPrefix(k, c.in.Root+"slot/") {
			c.violate("slot held with no deploy behind it", c.in.FinalAt, "%s = %s", strings.TrimPrefix(k, c.in.Root), kv.Value)
		}
	}
}

// Budget is the documented bound on an env's keys (docs/fleet.md, "Key
// budget"), for hosts hosts (alive, or gone for less than a week), the
// rollouts and migrations the fleet keeps, migsPerRevision migrations per
// revision and the jobs:
//   - per host: its record and last-seen, a slot-queue place, a slot, a
//     migration lock place, a reporter candidacy, a running mark per job,
//     and a result in each kept attempt (the window plus the one being
//     made, plus one straggler's);
//   - per env: the control keys (pause, retry, rollback, epoch), the
//     good revision and the newest attempt's name; per kept attempt (plus the one being made) its record,
//     creating, pausing, pause and promoted keys and a halt; the kept
//     migration states plus one revision's; per job its high-water mark
//     and its history.
func Budget(hosts, keepRollouts, keepMigrations, migsPerRevision int, jobs []JobSpec) int {
	n := hosts*(6+len(jobs)+keepRollouts+2) + 6 + 6*(keepRollouts+1) + keepMigrations + migsPerRevision
	for _, j := range jobs {
		n += 1 + j.History
	}
	return n
}

// keyBudget replays the history and compares the most keys the env ever
// held with the budget.
func (c *checker) keyBudget() {
	hosts := map[string]bool{}
	for _, e := range c.in.Events {
		if e.Kind == "start" {
			hosts[e.Host] = true
		}
	}
	c.res.Budget = Budget(len(hosts), c.in.KeepRollouts, c.in.KeepMigrations, 1, c.in.Jobs)
	c.res.Hosts = len(hosts)
	live := map[string]int{}
	bytes := 0
	var maxRev int64
	var maxAt map[string]int
	for i, ch := range c.in.History {
		bytes -= live[ch.Key]
		if ch.Put {
			live[ch.Key] = len(ch.Key) + len(ch.Value)
			bytes += live[ch.Key]
		} else {
			delete(live, ch.Key)
		}
		c.res.MaxBytes = max(c.res.MaxBytes, bytes)
		if i+1 < len(c.in.History) && c.in.History[i+1].Rev == ch.Rev {
			continue // a transaction's changes count together
		}
		if len(live) > c.res.MaxKeys {
			c.res.MaxKeys, maxRev = len(live), ch.Rev
			if len(live) > c.res.Budget {
				maxAt = classes(c.in.Root, live)
			}
		}
	}
	if c.res.MaxKeys > c.res.Budget {
		var parts []string
		for k, n := range maxAt {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(parts)
		c.violate("key budget exceeded", c.in.FinalAt, "the env held %d keys at etcd revision %d, over its budget of %d (%d hosts, %d rollouts kept): %s",
			c.res.MaxKeys, maxRev, c.res.Budget, len(hosts), c.in.KeepRollouts, strings.Join(parts, ", "))
	}
}

// classes counts keys by their first segment under root.
func classes(root string, live map[string]int) map[string]int {
	out := map[string]int{}
	for k := range live {
		seg, _, _ := strings.Cut(strings.TrimPrefix(k, root), "/")
		out[seg]++
	}
	return out
}
