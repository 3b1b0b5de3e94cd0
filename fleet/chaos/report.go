package chaos

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Report is a run's outcome.
type Report struct {
	*Result
	Dir  string
	Took time.Duration
}

// check reads etcd's final state (agents still running), stops the
// agents, reads etcd's history and the ledgers, and runs the checker.
func (h *Harness) check(final string, converged error) (*Report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := "/berth/" + Env + "/"
	snap, _, err := snapshotOf(ctx, h.mon, root)
	if err != nil {
		return nil, err
	}
	finalAt := time.Now()
	h.stopAgents()
	resp, err := h.mon.Get(ctx, "/berth/")
	if err != nil {
		return nil, fmt.Errorf("read etcd's revision: %w", err)
	}
	hist, err := historyOf(ctx, h.mon, root, resp.Header.Revision)
	if err != nil {
		return nil, err
	}
	events, err := ReadLedgers(ledgerDir(h.dir))
	if err != nil {
		return nil, err
	}
	res := Check(Input{Events: events, Final: snap, FinalAt: finalAt, History: hist, Root: root,
		TTL: h.cfg.TTL, Timeout: h.cfg.Timeout, MaxParallel: h.cfg.MaxParallel, KeepRollouts: h.cfg.KeepRollouts, KeepMigrations: h.cfg.KeepMigrations,
		Jobs: h.jobs, FinalRev: final, Converged: converged})
	r := &Report{Result: res, Dir: h.dir, Took: time.Since(h.began)}
	h.print(r, len(hist))
	if len(res.Violations) == 0 && !h.cfg.Keep && h.cfg.Dir == "" {
		_ = os.RemoveAll(h.dir)
	}
	return r, nil
}

func (h *Harness) print(r *Report, changes int) {
	w := h.out
	fmt.Fprintf(w, "\n== chaos-fleet seed %d: %s of faults, %s in all\n", h.cfg.Seed, h.cfg.Duration, r.Took.Round(time.Second))
	fmt.Fprintf(w, "operations: %s\n", counts(r.Ops))
	fmt.Fprintf(w, "faults:     %s\n", counts(r.Faults))
	if len(r.Unanswered) > 0 {
		var total, longest time.Duration
		for _, d := range r.Unanswered {
			total, longest = total+d, max(longest, d)
		}
		fmt.Fprintf(w, "etcd away, not injected: %d periods in which etcd answered not even the harness's probe, with no fault of etcd on (an overloaded machine), %s in all, the longest %s; they cover what a cluster fault would\n",
			len(r.Unanswered), total.Round(100*time.Millisecond), longest.Round(100*time.Millisecond))
	}
	fmt.Fprintf(w, "etcd:       %d changes; at most %d keys in the env (budget %d), %d bytes of keys and values (%d per host, %d hosts)\n",
		changes, r.MaxKeys, r.Budget, r.MaxBytes, r.MaxBytes/max(r.Hosts, 1), r.Hosts)
	if len(r.Notes) > 0 {
		fmt.Fprintf(w, "documented exceptions (not violations): %d\n", len(r.Notes))
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	fmt.Fprintf(w, "violations: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  - %s\n", v)
	}
	if len(r.Violations) > 0 || h.cfg.Keep {
		fmt.Fprintf(w, "run dir kept: %s (ledger/, logs/)\n", r.Dir)
	}
}

func counts(m map[string]int) string {
	var parts []string
	total := 0
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}
