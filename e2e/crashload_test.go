package e2e

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// TestE2E_CutoversUnderLoadSurviveRandomKills drives back-to-back cutovers
// of `berth run` while clients hold keep-alive connections through nginx,
// and SIGKILLs the agent at random moments of most of them (restarting it
// at once, as systemd would). Every cutover must converge to one whole
// revision, and the clients may see only what an nginx reload costs:
//
//   - no answer other than 2xx, for wrk and for a Go http.Client load;
//   - no connect, write or timeout error for wrk, and at most one read
//     error per wrk connection per reload (nginx closes the idle
//     keep-alive connections of the workers a reload retires; a client
//     that sent its next request at that instant reads EOF);
//   - no error at all for the Go client (it retries a GET whose reused
//     connection the server closed before answering);
//   - never more than one nginx reload per cutover, crashes included.
func TestE2E_CutoversUnderLoadSurviveRandomKills(t *testing.T) {
	testenv.Parallel(t)
	const (
		cutovers   = 8
		kills      = 6
		goClients  = 4
		killWithin = 7 * time.Second // a cutover takes ~5–12 s here
	)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("seed %d", seed)

	w := newWorld(t)
	imgs := []testenv.AppImage{testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"}), testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})}
	for _, img := range imgs {
		w.d.CleanupImage(img.Ref())
	}
	commit := func(i int) (string, testenv.AppImage) {
		img := imgs[i%2]
		// The marker changes every service's config: each commit is a
		// whole cutover (migration, worker, server), also back to an
		// image deployed before.
		compose := fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit, APP_MARKER: cutover-%[2]d}
    x-berth: {role: migrate}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000", APP_MARKER: cutover-%[2]d}
  web:
    image: %[1]s
    environment: {APP_MARKER: cutover-%[2]d}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app, file: %[3]s}
`, img.Ref(), i, w.lbFile)
		return w.repo.CommitFiles(t, fmt.Sprintf("cutover %d", i), map[string]string{"envs/" + w.env + "/compose.yaml": compose}), img
	}
	var d *daemon
	converged := func(c string, img testenv.AppImage, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		want := []string{"web@" + c[:12] + ":running", "worker@" + c[:12] + ":running"}
		for w.serving() != "version="+img.Version || !slices.Equal(w.containers(), want) {
			if time.Since(start) > within {
				t.Fatalf("not converged to %s within %s: serving %q, containers %v; the agent's last lines:\n%s", c[:12], within, w.serving(), w.containers(), d.tail())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return time.Since(start)
	}

	c, img := commit(0)
	if code, out := w.once(); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	converged(c, img, patience)
	d = w.start()

	// The load, from before the first cutover to after the last.
	url := w.nginx.URL() + "/"
	wrk, g := testenv.StartWrk(t, url, testenv.Paced), testenv.StartLoad(t, url, goClients, testenv.Paced)
	g.Flowing(t, 100)
	reloads := w.nginx.Reloads(t)

	killed := 0
	for i := 1; i <= cutovers; i++ {
		c, img := commit(i)
		kill := killed < kills && (cutovers-i < kills-killed || rng.IntN(4) != 0)
		start := time.Now()
		if kill {
			at := time.Duration(rng.Int64N(int64(killWithin)))
			time.Sleep(at)
			d.kill()
			killed++
			t.Logf("cutover %d: agent killed %s after the commit", i, at.Round(time.Millisecond))
			d = w.start()
		}
		converged(c, img, patience)
		t.Logf("cutover %d to %s converged after %s", i, c[:12], time.Since(start).Round(time.Millisecond))
	}
	g.Flowing(t, 100)
	reloads = w.nginx.Reloads(t) - reloads
	gs := g.Stop()
	ws := wrk.Stop(t)
	d.kill()
	t.Logf("%d cutovers, %d with the agent killed, %d nginx reloads", cutovers, killed, reloads)
	t.Logf("wrk: %s", ws)
	t.Logf("Go client: %s", gs)

	if reloads > cutovers {
		t.Errorf("%d nginx reloads for %d cutovers: more than one per switch", reloads, cutovers)
	}
	if ws.Requests == 0 || ws.Non2xx != 0 || ws.Connect != 0 || ws.Write != 0 || ws.Timeout != 0 {
		t.Errorf("wrk saw errors beyond what a reload costs:\n%s", wrk.Output())
	}
	if bound := int64(testenv.WrkConns * reloads); ws.Read > bound {
		t.Errorf("wrk: %d read errors, more than %d connections × %d reloads", ws.Read, testenv.WrkConns, reloads)
	}
	if gs.Sent == 0 || gs.Failed != 0 {
		t.Errorf("Go client: %s", gs)
	}
}
