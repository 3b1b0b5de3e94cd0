package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/jobs"
)

// Three `berth run` agents of one env on one etcd (the fleet harness of
// fleet_test.go): a run_on: one job runs each scheduled time on one host
// — N runs in all, not 3N — and `berth jobs history` on every host shows
// the same runs, each naming its host.
func TestE2E_FleetJobOncePerScheduledTime(t *testing.T) {
	testenv.Parallel(t)
	w := newFleetWorld(t, 3)
	img := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "jobs"})
	c1 := w.repo.CommitFiles(t, "a worker and a job", map[string]string{"envs/" + w.env + "/compose.yaml": fmt.Sprintf(`services:
  worker:
    image: %s
    environment: {APP_MODE: serve}
    x-berth: {role: worker}
x-berth:
  jobs:
    tick:
      schedule: "@every 10s"
      service: worker
      environment: {APP_MODE: exit, APP_PRINT_ENV: BERTH_FENCE_TOKEN}
`, img.Ref())})
	for _, h := range w.hosts {
		h.start()
	}
	w.waitFor("every host live", 4*time.Minute, func() bool { return w.allLive(c1) })
	const n = 3
	w.waitFor(fmt.Sprintf("%d finished runs in the fleet's history", n), 4*time.Minute, func() bool {
		runs, err := w.hosts[0].fleetJobs("tick")
		if err != nil {
			return false
		}
		done := 0
		for _, r := range runs {
			if r.Status == "succeeded" {
				done++
			}
		}
		return done >= n
	})
	for _, h := range w.hosts {
		h.kill()
	}
	fleetRuns, err := w.hosts[0].fleetJobs("tick")
	if err != nil {
		t.Fatal(err)
	}
	ran := map[time.Time]string{} // scheduled time → host, from the fleet
	for _, r := range fleetRuns {
		if r.Host == "" || r.Token == 0 {
			t.Errorf("fleet record without its host or token: %+v", r)
		}
		if r.Status != string(jobs.StatusSkipped) {
			ran[r.Scheduled.UTC()] = r.Host
		}
	}
	local := map[time.Time][]string{} // scheduled time → hosts that ran it
	for _, h := range w.hosts {
		other, err := h.fleetJobs("tick")
		if err != nil {
			t.Fatal(err)
		}
		if len(other) != len(fleetRuns) {
			t.Errorf("%s shows %d fleet records, %s %d", h.name, len(other), w.hosts[0].name, len(fleetRuns))
		}
		var own []jobs.Run
		if err := h.jobsCLI(&own, "history", "tick", "--local", "-n", "1000"); err != nil {
			t.Fatal(err)
		}
		for _, r := range own {
			if r.Status == jobs.StatusSkipped {
				continue
			}
			local[r.Scheduled.UTC()] = append(local[r.Scheduled.UTC()], h.name)
			if r.Host != h.name || r.FenceToken == 0 {
				t.Errorf("%s's own run %+v: want its host and token", h.name, r)
			}
		}
	}
	total := 0
	for at, hosts := range local {
		total += len(hosts)
		if len(hosts) != 1 || ran[at] != hosts[0] {
			t.Errorf("time %s ran on %v; the fleet says %q", at, hosts, ran[at])
		}
	}
	if total != len(ran) || total < n {
		t.Errorf("%d runs on the hosts, %d in the fleet's history (want equal, at least %d)", total, len(ran), n)
	}
	t.Logf("%d scheduled times, each run once; by host: %v", len(ran), countHosts(ran))
}

func countHosts(m map[time.Time]string) map[string]int {
	out := map[string]int{}
	for _, h := range m {
		out[h]++
	}
	return out
}

// fleetJobs is `berth jobs history NAME --json` on host h: the fleet's
// records.
func (h *fleetHost) fleetJobs(job string) ([]fleet.JobRecord, error) {
	var runs []fleet.JobRecord
	return runs, h.jobsCLI(&runs, "history", job, "-n", "1000")
}

func (h *fleetHost) jobsCLI(into any, args ...string) error {
	cmd := exec.Command(h.w.bin, append(append([]string{"jobs"}, args...), "--config", h.config, "--json")...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("berth jobs %v: %v: %s", args, err, stderr.String())
	}
	return json.Unmarshal(out, into)
}
