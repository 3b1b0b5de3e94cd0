package daemon

import (
	"strings"
	"testing"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/migrate"
	"berth.dev/berth/notify"
	"berth.dev/berth/reconcile"
)

// The notification and the metrics are rendered from the pass's outcome,
// never inferred from phase names: a cli one-shot failing after a
// migration ran reports the migration, and only a deploy that undid
// something counts as a rollback.
func TestPassEventAndMetrics_RenderTheOutcome(t *testing.T) {
	tests := []struct {
		name          string
		rec           reconcile.Record
		class         failure.Class
		wantEvent     string
		wantText      []string
		wantRollbacks float64
		wantCheck     string
	}{
		{name: "deployed", rec: reconcile.Record{Result: reconcile.ResultSucceeded, Changed: true,
			Done: []string{"create prod-web-2", "switch web to 127.0.0.1:32770", "remove prod-web-1"}},
			wantEvent: notify.DeploySucceeded, wantText: []string{"deployed 0123456789ab"}, wantCheck: "ok"},
		{name: "refused before anything changed", class: failure.Verdict,
			rec:       reconcile.Record{Result: reconcile.ResultFailed, Class: "verdict", Phase: "load", Reason: "invalid config"},
			wantEvent: notify.DeployFailed, wantText: []string{"failed in load, nothing changed: invalid config"}, wantCheck: "verdict"},
		{name: "cli failed after a migration ran", class: failure.Verdict,
			rec: reconcile.Record{Result: reconcile.ResultFailed, Class: "verdict", Phase: "cli", Changed: true, Reason: "cli: cli smoke: exited with code 1",
				Done: []string{"run migrate (exit 0)", "run smoke (exit 1)"}},
			wantEvent: notify.DeployFailed, wantText: []string{"failed in cli after changes that are not undone (run migrate (exit 0), run smoke (exit 1))"}, wantCheck: "verdict"},
		{name: "rolled back", class: failure.Verdict,
			rec: reconcile.Record{Result: reconcile.ResultFailed, Class: "verdict", Phase: "servers", Changed: true, Reason: "servers: never healthy",
				Done: []string{"run migrate (exit 0)", "create prod-web-2"}, Undone: []string{"remove prod-web-2"}, OneShots: []migrate.Record{{Service: "migrate"}}},
			wantEvent: notify.DeployRolledBack, wantText: []string{"rolled back (undone: remove prod-web-2; not undone: run migrate (exit 0))"}, wantRollbacks: 1, wantCheck: "verdict"},
		{name: "outage", class: failure.Outage,
			rec:       reconcile.Record{Result: reconcile.ResultOutage, Class: "outage", Phase: "prepare", Passes: 3, Live: "fedcba9876543210", Reason: "prepare: connection refused"},
			wantEvent: notify.DeployOutage, wantText: []string{"waits for an outage (3 passes in prepare); the host keeps fedcba987654"}, wantCheck: "outage"},
		{name: "outage after a rollback", class: failure.Outage,
			rec: reconcile.Record{Result: reconcile.ResultOutage, Class: "outage", Phase: "workers", Changed: true, Reason: "workers: Cannot connect to the Docker daemon",
				Done: []string{"stop prod-worker-1"}, Undone: []string{"start prod-worker-1"}},
			wantEvent: notify.DeployOutage, wantRollbacks: 1, wantCheck: "outage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.rec.ID, tc.rec.Commit, tc.rec.Subject = "d1", "0123456789abcdef", "v2"
			p := reconcile.Pass{Result: tc.rec.Result, Record: tc.rec, New: true, Notify: true, Class: tc.class}
			e := passEvent("prod", p)
			if e.Event != tc.wantEvent || e.Env != "prod" || e.Commit != tc.rec.Commit {
				t.Errorf("event %+v, want %s", e, tc.wantEvent)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(e.Text, w) {
					t.Errorf("text %q lacks %q", e.Text, w)
				}
			}
			m := newAgentMetrics("dev", "")
			m.passEnded("prod", p)
			if got := m.rollbacks.Value("prod"); got != tc.wantRollbacks {
				t.Errorf("berth_rollbacks_total %v, want %v", got, tc.wantRollbacks)
			}
			if got := m.checks.Value("prod", tc.wantCheck); got != 1 {
				t.Errorf("berth_checks_total{result=%q} %v, want 1", tc.wantCheck, got)
			}
		})
	}
}
