package main

import (
	"testing"

	"berth.dev/berth/notify"
	"berth.dev/berth/reconcile"
)

func TestDeployEvent_FailedBeforeAnythingChangedOrRolledBack(t *testing.T) {
	for phase, want := range map[string]string{
		"":        notify.DeploySucceeded,
		"prepare": notify.DeployFailed,
		"cli":     notify.DeployFailed,
		"workers": notify.DeployRolledBack,
		"servers": notify.DeployRolledBack,
		"retire":  notify.DeployRolledBack,
	} {
		rec := reconcile.Record{ID: "d1", Commit: "0123456789abcdef", Subject: "v2", Phase: phase, Result: reconcile.ResultFailed, Reason: phase + ": boom"}
		if phase == "" {
			rec.Result, rec.Reason = reconcile.ResultSucceeded, ""
		}
		e := deployEvent("prod", rec)
		if e.Event != want || e.Key != "deploy:0123456789abcdef" || e.Env != "prod" || e.Text == "" {
			t.Errorf("phase %q: %+v, want %s", phase, e, want)
		}
	}
}
