package daemon

import (
	"fmt"
	"strings"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/envs"
	"berth.dev/berth/jobs"
	"berth.dev/berth/notify"
	"berth.dev/berth/reconcile"
	"github.com/hashicorp/go-hclog"
)

// newNotifier builds the notifier from the config (nil without targets).
func newNotifier(cfg *agentconfig.Config, log hclog.Logger) *notify.Notifier {
	if len(cfg.Notify) == 0 {
		return nil
	}
	n := &notify.Notifier{Log: log.Named("notify"), RepeatAfter: cfg.NotifyRepeatAfter.Duration}
	for _, t := range cfg.Notify {
		target := notify.Target{Type: t.Type}
		if t.URLFile != "" {
			target.URL = notify.URLFromFile(t.URLFile)
		} else {
			u := t.URL
			target.URL = func() (string, error) { return u, nil }
		}
		if len(t.Events) > 0 {
			target.Events = map[string]bool{}
			for _, e := range t.Events {
				target.Events[e] = true
			}
		}
		n.Targets = append(n.Targets, target)
	}
	return n
}

// passEvent renders a pass worth a notification (reconcile decides which
// are: a deploy that changed something, a verdict, an outage that lasted).
func passEvent(env string, p reconcile.Pass) notify.Event {
	rec := p.Record
	e := notify.Event{Env: env, Commit: rec.Commit, Subject: rec.Subject, DeployID: rec.ID, Status: string(rec.Result), Reason: rec.Reason, Key: "deploy:" + rec.Commit}
	what := fmt.Sprintf("%.12s %q", rec.Commit, rec.Subject)
	switch {
	case rec.Result == reconcile.ResultSucceeded:
		e.Event = notify.DeploySucceeded
		e.Text = fmt.Sprintf("berth %s: deployed %s", env, what)
	case rec.Result == reconcile.ResultOutage:
		e.Event, e.Key = notify.DeployOutage, "outage:"+rec.Commit+":"+string(rec.Phase)
		if rec.Commit == "" {
			what = "the branch head"
		}
		where := ""
		if rec.Phase != "" {
			where = " in " + string(rec.Phase)
		}
		e.Text = fmt.Sprintf("berth %s: %s waits for an outage (%d passes%s); the host keeps %s and retries by itself: %s",
			env, what, rec.Count(), where, orNone(rec.Live), rec.Reason)
	case len(rec.Undone) > 0:
		e.Event = notify.DeployRolledBack
		e.Text = fmt.Sprintf("berth %s: deploy of %s failed in %s and was rolled back (undone: %s%s): %s",
			env, what, rec.Phase, strings.Join(rec.Undone, ", "), kept(rec), rec.Reason)
	case len(rec.Done) > 0:
		// Changes nothing undoes: a migration that ran before a cli
		// one-shot failed.
		e.Event = notify.DeployFailed
		e.Text = fmt.Sprintf("berth %s: deploy of %s failed in %s after changes that are not undone (%s): %s",
			env, what, rec.Phase, strings.Join(rec.Done, ", "), rec.Reason)
	default:
		e.Event = notify.DeployFailed
		e.Text = fmt.Sprintf("berth %s: deploy of %s failed in %s, nothing changed: %s", env, what, rec.Phase, rec.Reason)
	}
	return e
}

// kept names the one-shots a rollback does not undo: those that ran.
func kept(rec reconcile.Record) string {
	var runs []string
	for _, r := range rec.OneShots {
		if r.Skipped == "" {
			runs = append(runs, fmt.Sprintf("run %s (exit %d)", r.Service, r.ExitCode))
		}
	}
	if len(runs) == 0 {
		return ""
	}
	return "; not undone: " + strings.Join(runs, ", ")
}

func orNone(commit string) string {
	if commit == "" {
		return "no live revision"
	}
	return fmt.Sprintf("%.12s", commit)
}

// jobEvent tells of a finished run, per the job's notify setting.
func jobEvent(n *notify.Notifier, env string, r jobs.Run, spec envs.JobSpec) {
	key := "job:" + r.Job
	e := notify.Event{Env: env, Job: r.Job, Run: r.ID, Status: string(r.Status), ExitCode: r.ExitCode, Reason: r.Reason, Commit: r.Revision, Key: key}
	switch {
	case spec.Notify == "never" || r.Status == jobs.StatusSkipped || r.Status == jobs.StatusInterrupted:
		return
	case r.Status == jobs.StatusSucceeded:
		n.Forget(key) // the next failure is news again
		if spec.Notify != "always" {
			return
		}
		e.Event, e.Key = notify.JobSucceeded, ""
		e.Text = fmt.Sprintf("berth %s: job %s succeeded (run %s)", env, r.Job, r.ID)
	default:
		e.Event = notify.JobFailed
		e.Text = fmt.Sprintf("berth %s: job %s %s (run %s): %s", env, r.Job, r.Status, r.ID, r.Reason)
	}
	n.Send(e)
}
