package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/reconcile"
)

// waitLiveCommit waits until state.json names commit as live: the state itself,
// never a log line.
func (w *world) waitLiveCommit(t testing.TB, commit string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		// Live means state.json names it and the journal holds the pass
		// that deployed it: the state is written first, then the record.
		st, err := reconcile.LoadState(w.state)
		if err == nil && st.Live != nil && st.Live.Commit == commit && slices.ContainsFunc(w.journal(t), func(r reconcile.Record) bool {
			return r.Commit == commit && r.Result == reconcile.ResultSucceeded
		}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%.12s not live within %s (state %+v, %v); journal:\n%s", commit, patience, st, err, w.journalText(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// journal reads the agent's journal, newest first.
func (w *world) journal(t testing.TB) []reconcile.Record {
	t.Helper()
	recs, err := (&reconcile.Journal{Dir: filepath.Join(w.state, "deploys")}).List()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (w *world) journalText(t testing.TB) string {
	var b strings.Builder
	for _, r := range w.journal(t) {
		fmt.Fprintf(&b, "  %.12s %s ×%d %s: %s\n", r.Commit, r.Result, r.Count(), r.Phase, r.Reason)
	}
	return b.String()
}

// waitOutage waits until the newest record is an outage of at least n
// passes in phase, and returns it.
func (w *world) waitOutage(t testing.TB, phase reconcile.Phase, n int) reconcile.Record {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		if recs := w.journal(t); len(recs) > 0 && recs[0].Result == reconcile.ResultOutage && recs[0].Phase == phase && recs[0].Count() >= n {
			return recs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outage of %d passes in %s within %s; journal:\n%s", n, phase, patience, w.journalText(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backoff is the longest wait the poller may take after n failed passes in
// a row (gitsource.Poller: 5 s doubling, ±10 % jitter).
func backoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 10*time.Minute; i++ {
		d *= 2
	}
	return d * 11 / 10
}

// Registry, Vault and Git each go down when a commit lands, then come
// back. Each time the agent records an outage (counted, not one record per
// pass), never marks the commit failed, keeps the live revision serving,
// and deploys the head by itself within one backoff period of the
// service's return: no `berth retry`.
func TestE2E_GitRegistryAndVaultOutagesAreWaitedOut(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	v := testenv.StartVault(t)
	root := v.RootClient(t)
	for _, p := range []string{"journal/db", "journal/db2"} {
		if _, err := root.KVv2("secret").Put(t.Context(), p, map[string]any{"password": "outage-s3cret-" + w.d.RunID}); err != nil {
			t.Fatal(err)
		}
	}
	root.Sys().PutPolicy("berth", `path "secret/data/journal/*" { capabilities = ["read"] }`)
	tok, err := root.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"berth"}})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "vault-token")
	os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken), 0o600)

	// The agent reaches Git, the registry and Vault through gates.
	gitURL, _ := url.Parse(w.repo.HTTPURL())
	gitGate := testenv.NewGate(t, gitURL.Host)
	regGate := testenv.NewGate(t, w.reg.Host)
	vaultURL, _ := url.Parse(v.Addr)
	vaultGate := testenv.NewGate(t, vaultURL.Host)
	cfg, _ := os.ReadFile(w.config)
	cfgText := strings.Replace(string(cfg), gitURL.Host, gitGate.Addr, 1) +
		fmt.Sprintf("vault: {address: http://%s, token_file: %s}\n", vaultGate.Addr, tokenFile)
	os.WriteFile(w.config, []byte(cfgText), 0o600)
	gated := func(version string) testenv.AppImage {
		img := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: version})
		img.Repo = strings.Replace(img.Repo, w.reg.Host, regGate.Addr, 1)
		w.d.CleanupImage(img.Ref())
		return img
	}
	commit := func(msg string, img testenv.AppImage, secret string) string {
		return w.repo.CommitFiles(t, msg, map[string]string{"envs/" + w.env + "/compose.yaml": fmt.Sprintf(`services:
  web:
    image: %s
    x-berth:
      role: server
      port: 8080
      secrets: {DB_PASSWORD: "secret/%s#password"}
x-berth:
  lb: {type: nginx, upstream: app, file: %s}
`, img.Ref(), secret, w.lbFile)})
	}

	c1 := commit("v1", gated("v1"), "journal/db")
	d := w.start()
	defer d.kill()
	w.waitLiveCommit(t, c1)

	steps := []struct {
		name    string
		gate    *testenv.Gate
		phase   reconcile.Phase // where the pass stops while it is down
		version string
		secret  string
	}{
		{name: "git", gate: gitGate, phase: "list", version: "v2", secret: "journal/db"},
		{name: "registry", gate: regGate, phase: "prepare", version: "v3", secret: "journal/db"},
		// A new secret path: nothing cached, Vault must answer.
		{name: "vault", gate: vaultGate, phase: "prepare", version: "v3", secret: "journal/db2"},
	}
	serving := "version=v1"
	for _, st := range steps {
		t.Run(st.name+" down when a commit lands", func(t *testing.T) {
			img := gated(st.version)
			st.gate.Down()
			c := commit(st.name+" outage", img, st.secret)
			out := w.waitOutage(t, st.phase, 2)
			if got := w.serving(); got != serving {
				t.Fatalf("during the outage nginx serves %q, want the live %q", got, serving)
			}
			up := time.Now()
			st.gate.Up(t)
			w.waitLiveCommit(t, c)
			took := time.Since(up)

			s, _ := reconcile.LoadState(w.state)
			if s.Failed != nil {
				t.Fatalf("an outage marked %.12s failed: %s", s.Failed.Commit, s.Failed.Reason)
			}
			var outage, deployed *reconcile.Record
			recs := w.journal(t)
			for i := range recs {
				if recs[i].ID == out.ID {
					outage = &recs[i]
				}
				if recs[i].Commit == c && recs[i].Result == reconcile.ResultSucceeded {
					deployed = &recs[i]
				}
			}
			if outage == nil || deployed == nil || outage.Class != "outage" || !slices.Contains([]string{"", c}, outage.Commit) {
				ids := make([]string, len(recs))
				for i, r := range recs {
					ids[i] = r.ID + " " + r.Commit + " " + string(r.Result) + "/" + r.Class
				}
				t.Fatalf("journal after the outage (looking for outage %s and a success of %.12s; outage found %v, deployed found %v):\n%s\nrecords: %q", out.ID, c, outage != nil, deployed != nil, w.journalText(t), ids)
			}
			// The pass that deployed started within one backoff period of
			// the service's return (and of the last failed pass), give or
			// take a busy machine's timer latency: seen 35 ms late at a load
			// of 45; a pass that waited a whole further step would come a
			// backoff period later.
			limit := backoff(outage.Count()) + 2*time.Second
			if gap := deployed.Started.Sub(outage.LastPass); gap > limit || deployed.Started.Sub(up) > limit {
				t.Fatalf("deploying pass began %s after the last failed one and %s after recovery; the backoff after %d passes is at most %s",
					gap, deployed.Started.Sub(up), outage.Count(), limit)
			}
			t.Logf("%s down for %d passes (one record); the deploying pass began %s after recovery (backoff bound %s), live %s after recovery", st.name, outage.Count(), deployed.Started.Sub(up).Round(100*time.Millisecond), limit, took.Round(100*time.Millisecond))
			if got := w.serving(); got != "version="+st.version {
				t.Fatalf("after recovery nginx serves %q, want %s", got, st.version)
			}
			serving = "version=" + st.version
		})
	}

	var history []struct {
		Result string
		Passes int
	}
	w.cli(&history, "history")
	outages := 0
	for _, h := range history {
		if h.Result == "outage" {
			outages++
			if h.Passes < 2 {
				t.Errorf("an outage record of %d passes: repeated passes must be counted into one", h.Passes)
			}
		}
	}
	if outages != 3 {
		b, _ := json.Marshal(history)
		t.Fatalf("berth history: %d outage records, want 3 (one per outage): %s", outages, b)
	}
	// One metric increment per pass: the outage passes the journal counted.
	passes := 0
	for _, r := range w.journal(t) {
		if r.Result == reconcile.ResultOutage {
			passes += r.Count()
		}
	}
	if got := value(w.scrape(t), "berth_checks_total", "result", "outage"); got != float64(passes) {
		t.Fatalf("berth_checks_total{result=outage} %v, want %d (one per outage pass)", got, passes)
	}
}
