package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/testenv"
)

// BenchmarkMergeToLive measures what a developer waits for: from the push
// of a commit that changes the digest (the merge) to nginx serving the new
// version, with the Git webhook telling the agent and the images present.
// Each iteration alternates v1 and v2 (migrate, a worker, a server). It
// reports p50/p95 of merge→serving, of the deploy itself (journal: started
// → finished, mostly container start and health waits), and of merge→deploy
// start (webhook, ref listing, fetch, load, plan: berth's own latency).
//
//	go test -run '^$' -bench MergeToLive -benchtime 10x ./e2e
func BenchmarkMergeToLive(b *testing.B) {
	for _, lbType := range []string{"nginx", "haproxy"} {
		b.Run(lbType, func(b *testing.B) { benchMergeToLive(b, lbType) })
	}
}

func benchMergeToLive(b *testing.B, lbType string) {
	w := newWorld(b)
	cfg, _ := os.ReadFile(w.config)
	cfgText := strings.Replace(string(cfg), "poll_interval: 1s", "poll_interval: 1h", 1)
	commit := func(msg string, img testenv.AppImage) string { return w.commit(msg, img, "serve") }
	serving := w.serving
	if lbType == "haproxy" {
		hp := testenv.StartHAProxy(b, "web")
		hpCmd, _ := json.Marshal(append([]string{"haproxy"}, hp.Args()...))
		cfgText += fmt.Sprintf("haproxy:\n  runtime_api: %s\n  servers_dir: %s\n  command: %s\n", hp.RuntimeAPI(), hp.ServersDir, hpCmd)
		commit = func(msg string, img testenv.AppImage) string {
			compose := fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit}
    x-berth: {role: migrate}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000"}
  web:
    image: %[1]s
    x-berth: {role: server, port: 8080, lb: {type: haproxy, backend: web}}
`, img.Ref())
			return w.repo.CommitFiles(w.t, msg, map[string]string{"envs/" + w.env + "/compose.yaml": compose})
		}
		serving = func() string {
			v := version(hp.URL() + "/")
			return v
		}
	}
	os.WriteFile(w.config, []byte(cfgText), 0o600)
	imgs := []testenv.AppImage{
		testenv.PushApp(b, w.reg, testenv.ImageSpec{Version: "v1"}),
		testenv.PushApp(b, w.reg, testenv.ImageSpec{Version: "v2"}),
	}
	eng := engine.New(w.d.Client, nil)
	for _, img := range imgs {
		w.d.CleanupImage(img.Ref())
		if _, err := eng.EnsureImage(context.Background(), img.Ref()); err != nil { // images present
			b.Fatal(err)
		}
	}
	first := commit("v1", imgs[0])
	d := w.start()
	d.waitFor(b, "deployed", first[:12])
	body := `{"ref":"refs/heads/main"}`
	var total, deploy, detect, own []time.Duration
	steps := map[string][]time.Duration{}
	i := 1
	for b.Loop() {
		img := imgs[i%2]
		want := img.Version
		i++
		c := commit(fmt.Sprintf("release %s (%d)", want, i), img)
		merged := time.Now() // pushed: the merge is done
		if code := w.hook(b, "X-Hub-Signature-256", githubSig(w.hookSecret, body), body); code != 202 {
			b.Fatalf("webhook: %d", code)
		}
		for !strings.HasPrefix(serving(), "version="+want) {
			if time.Since(merged) > time.Minute {
				var hist []map[string]any
				w.cli(&hist, "history", "-n", "2")
				b.Fatalf("%s not served after a minute; history %v; the agent's last lines:\n%s", want, hist, d.drain(40))
			}
			time.Sleep(10 * time.Millisecond)
		}
		total = append(total, time.Since(merged))
		d.waitFor(b, "deployed", c[:12])
		var recs []struct {
			Commit            string
			Started, Finished time.Time
			Phases            []struct{ Duration time.Duration }
			Steps             []struct {
				Name     string
				Duration time.Duration
			}
		}
		w.cli(&recs, "history", "-n", "1")
		if len(recs) == 1 && recs[0].Commit == c {
			r := recs[0]
			deploy = append(deploy, r.Finished.Sub(r.Started))
			detect = append(detect, r.Started.Sub(merged))
			// berth's own time before the first phase and after the last:
			// the webhook, listing, fetch, load, plan, and the record.
			outside := r.Finished.Sub(r.Started)
			for _, p := range r.Phases {
				outside -= p.Duration
			}
			own = append(own, r.Started.Sub(merged)+outside)
			for _, st := range r.Steps {
				steps[st.Name] = append(steps[st.Name], st.Duration)
			}
		}
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"merge-to-serving", total}, {"deploy", deploy}, {"merge-to-deploy-start", detect}, {"berth-outside-phases", own}} {
		b.ReportMetric(pct(m.ds, 50).Seconds(), m.name+"-p50-s")
		b.ReportMetric(pct(m.ds, 95).Seconds(), m.name+"-p95-s")
	}
	for name, ds := range steps {
		b.ReportMetric(pct(ds, 95).Seconds(), "step-"+name+"-p95-s")
	}
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

// drain returns the last n log lines the daemon wrote that no waitFor
// read yet.
func (d *daemon) drain(n int) string {
	var seen []string
	for {
		select {
		case l := <-d.lines:
			seen = append(seen, l)
		default:
			return strings.Join(seen[max(0, len(seen)-n):], "\n")
		}
	}
}
