package e2e

import (
	"context"
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
	w := newWorld(b)
	cfg, _ := os.ReadFile(w.config)
	os.WriteFile(w.config, []byte(strings.Replace(string(cfg), "poll_interval: 1s", "poll_interval: 1h", 1)), 0o600)
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
	first := w.commit("v1", imgs[0], "serve")
	d := w.start()
	d.waitFor(b, "deployed", first[:12])
	body := `{"ref":"refs/heads/main"}`
	var total, deploy, detect []time.Duration
	i := 1
	for b.Loop() {
		img := imgs[i%2]
		want := img.Version
		i++
		commit := w.commit("release "+want, img, "serve")
		merged := time.Now() // pushed: the merge is done
		if code := w.hook(b, "X-Hub-Signature-256", githubSig(w.hookSecret, body), body); code != 202 {
			b.Fatalf("webhook: %d", code)
		}
		for !strings.HasPrefix(w.serving(), "version="+want) {
			if time.Since(merged) > time.Minute {
				b.Fatalf("%s not served after a minute", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		total = append(total, time.Since(merged))
		d.waitFor(b, "deployed", commit[:12])
		var recs []struct {
			Commit            string
			Started, Finished time.Time
		}
		w.cli(&recs, "history", "-n", "1")
		if len(recs) == 1 && recs[0].Commit == commit {
			deploy = append(deploy, recs[0].Finished.Sub(recs[0].Started))
			detect = append(detect, recs[0].Started.Sub(merged))
		}
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"merge-to-serving", total}, {"deploy", deploy}, {"merge-to-deploy-start", detect}} {
		b.ReportMetric(pct(m.ds, 50).Seconds(), m.name+"-p50-s")
		b.ReportMetric(pct(m.ds, 95).Seconds(), m.name+"-p95-s")
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
