package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/testenv"
	"github.com/docker/docker/api/types/container"
)

func TestE2E_KilledAtEachPhaseConverges(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	imgs := map[string]testenv.AppImage{}
	for _, v := range []string{"v1", "v2", "v3", "v4", "v5", "v6"} {
		imgs[v] = testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: v})
		w.d.CleanupImage(imgs[v].Ref())
	}
	w.commit("v1", imgs["v1"], "serve")
	if code, out := w.once(); code != 0 {
		t.Fatalf("v1: %d\n%s", code, out)
	}
	points := []struct {
		version string
		markers []string
	}{
		{"v2", []string{`"@message":"plan"`}},
		{"v3", []string{`"@message":"container started"`, `"service":"worker"`}},
		{"v4", []string{`"@message":"container started"`, `"service":"web"`}},
		{"v5", []string{`"@message":"load balancer switched"`}},
		{"v6", []string{`"@message":"container retired"`}},
	}
	for _, p := range points {
		t.Run("killed after "+strings.Join(p.markers, " "), func(t *testing.T) {
			c := w.commit(p.version, imgs[p.version], "serve")
			d := w.start()
			d.waitFor(t, p.markers...)
			d.kill()
			d = w.start()
			t.Cleanup(d.kill) // a failed point leaves no agent holding the state dir for the next
			deadline := time.Now().Add(patience)
			want := []string{"web@" + c[:12] + ":running", "worker@" + c[:12] + ":running"}
			for w.serving() != "version="+p.version || !slices.Equal(w.containers(), want) {
				if time.Now().After(deadline) {
					t.Fatalf("not converged: serving %q, containers %v, want %v", w.serving(), w.containers(), want)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

func TestE2E_SIGTERMDuringACutoverRollsBackAndExits(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	w.d.CleanupImage(v1.Ref())
	w.d.CleanupImage(v2.Ref())
	c1 := w.commit("v1", v1, "serve")
	if code, out := w.once(); code != 0 {
		t.Fatalf("v1: %d\n%s", code, out)
	}
	c2 := w.commit("v2", v2, "serve")
	d := w.start()
	d.waitFor(t, `"@message":"container started"`, `"service":"web"`)
	d.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { _, err := d.cmd.Process.Wait(); exited <- err }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("berth run still running 30s after SIGTERM")
	}
	want := []string{"web@" + c1[:12] + ":running", "worker@" + c1[:12] + ":running"}
	if got := w.containers(); w.serving() != "version=v1" || !slices.Equal(got, want) {
		t.Fatalf("after SIGTERM mid-cutover: serving %q, containers %v, want v1 whole %v", w.serving(), got, want)
	}
	// The interrupted revision is not a failure: the next start deploys it.
	if code, out := w.once(); code != 0 || w.serving() != "version=v2" {
		t.Fatalf("restart: exit %d, serving %q\n%s", code, w.serving(), out)
	}
	var history []struct{ Commit, Result string }
	w.cli(&history, "history")
	if len(history) < 2 || history[0].Commit != c2 || history[0].Result != "succeeded" || history[1].Result != "interrupted" {
		t.Fatalf("history %+v, want the interrupted deploy of %s then its success", history, c2[:12])
	}
}

func TestE2E_PlanSelfHealAndOneAgentPerStateDir(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(v1.Ref())
	c1 := w.commit("v1", v1, "serve")

	out, err := exec.Command(w.bin, "plan", "--config", w.config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "web: create, no container") || !strings.Contains(string(out), "migrate: run") {
		t.Fatalf("berth plan before the first deploy: %v\n%s", err, out)
	}
	if len(w.containers()) != 0 {
		t.Fatal("berth plan changed the host")
	}
	if code, log := w.once(); code != 0 {
		t.Fatalf("v1: %d\n%s", code, log)
	}
	out, _ = exec.Command(w.bin, "plan", "--config", w.config).CombinedOutput()
	if !strings.Contains(string(out), "no change") {
		t.Fatalf("berth plan on a converged host:\n%s", out)
	}

	// Someone removes the server by hand: the next check restores it.
	ms, _ := engine.New(w.d.Client, nil).List(t.Context(), w.env)
	for _, m := range ms {
		if m.Service == "web" {
			w.d.Client.ContainerRemove(t.Context(), m.ID, container.RemoveOptions{Force: true})
		}
	}
	if code, log := w.once(); code != 0 || w.serving() != "version=v1" {
		t.Fatalf("self-heal: exit %d, serving %q\n%s", code, w.serving(), log)
	}
	want := []string{"web@" + c1[:12] + ":running", "worker@" + c1[:12] + ":running"}
	if got := w.containers(); !slices.Equal(got, want) {
		t.Fatalf("containers after self-heal %v", got)
	}

	d := w.start()
	d.waitFor(t, `"@message":"berth started"`)
	code, log := w.once()
	if code != 1 || !strings.Contains(log, "another berth agent is running on "+w.state) {
		t.Fatalf("a second agent on the same state dir: exit %d\n%s", code, log)
	}
	d.kill()
}
