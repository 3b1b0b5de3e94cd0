package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/testenv"
)

type jobRun struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Started  time.Time
	Revision string `json:"revision"`
}

type jobEntry struct {
	Name     string   `json:"name"`
	Schedule string   `json:"schedule"`
	Running  []string `json:"running"`
}

// commitJobs pushes an environment with one worker and the given jobs,
// all inheriting from it.
func (w *world) commitJobs(msg string, img testenv.AppImage, jobs string) string {
	compose := fmt.Sprintf(`services:
  worker:
    image: %s
    environment: {APP_PORT: "9000"}
x-berth:
  jobs:
%s`, img.Ref(), jobs)
	return w.repo.CommitFiles(w.t, msg, map[string]string{"envs/" + w.env + "/compose.yaml": compose})
}

func (w *world) jobRuns(job string) []jobRun {
	var rs []jobRun
	w.cli(&rs, "jobs", "history", job, "-n", "1000")
	return rs
}

func (w *world) eventually(what string, ok func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(patience)
	for !ok() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestE2E_JobsFollowTheLiveRevisionAndSurviveAKill(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	w.d.CleanupLabel(t, engine.LabelJobEnv, w.env)
	img := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "jobs"})
	w.d.CleanupImage(img.Ref())
	rev1 := w.commitJobs("jobs v1", img, `
    tick:
      schedule: "@every 2s"
      service: worker
      environment: {APP_MODE: exit, APP_MARKER: tick-output}
    gone:
      schedule: "@every 2s"
      service: worker
      environment: {APP_MODE: exit}
    long:
      schedule: "@yearly"
      service: worker
      environment: {APP_MODE: idle}
`)
	d := w.start()
	d.waitFor(t, "deployed", rev1[:12])
	w.eventually("two tick runs", func() bool {
		n := 0
		for _, r := range w.jobRuns("tick") {
			if r.Status == "succeeded" {
				n++
			}
		}
		return n >= 2
	})
	out, err := exec.Command(w.bin, "jobs", "logs", "tick", "--config", w.config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tick-output") {
		t.Fatalf("berth jobs logs tick: %v\n%s", err, out)
	}
	out, err = exec.Command(w.bin, "jobs", "list", "--config", w.config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "@every 2s") || !strings.Contains(string(out), "@yearly") {
		t.Fatalf("berth jobs list: %v\n%s", err, out)
	}

	// A new revision: tick's schedule changes, gone is removed. No restart.
	rev2 := w.commitJobs("jobs v2", img, `
    tick:
      schedule: "@every 1h"
      service: worker
      environment: {APP_MODE: exit, APP_MARKER: tick-output}
    long:
      schedule: "@yearly"
      service: worker
      environment: {APP_MODE: idle}
`)
	w.eventually("the rev2 job listing", func() bool {
		var l []jobEntry
		w.cli(&l, "jobs", "list")
		return len(l) == 2 && l[1].Name == "tick" && l[1].Schedule == "@every 1h"
	})
	w.eventually("tick runs started under rev1 to finish", func() bool {
		for _, r := range w.jobRuns("tick") {
			if r.Status == "running" {
				return false
			}
		}
		return true
	})
	ticks, gones := len(w.jobRuns("tick")), len(w.jobRuns("gone"))
	time.Sleep(5 * time.Second)
	if n, m := len(w.jobRuns("tick")), len(w.jobRuns("gone")); n != ticks || m != gones {
		t.Fatalf("after %s: tick runs %d→%d, gone runs %d→%d", rev2[:12], ticks, n, gones, m)
	}

	// Kill the agent during a run: after restart it is interrupted and its
	// container is gone.
	if out, err := exec.Command(w.bin, "jobs", "run", "long", "--detach", "--config", w.config).CombinedOutput(); err != nil {
		t.Fatalf("berth jobs run long: %v\n%s", err, out)
	}
	d.kill()
	eng := engine.New(w.d.Client, nil)
	if left, _ := eng.ListJobRuns(context.Background(), w.env); len(left) != 1 {
		t.Fatalf("before restart, job containers: %+v", left)
	}
	w.start()
	w.eventually("the killed run to be recorded as interrupted", func() bool {
		rs := w.jobRuns("long")
		return len(rs) == 1 && rs[0].Status == "interrupted"
	})
	if left, _ := eng.ListJobRuns(context.Background(), w.env); len(left) != 0 {
		t.Fatalf("after restart, job containers: %+v", left)
	}
}
