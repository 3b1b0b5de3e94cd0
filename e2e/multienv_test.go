package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/reconcile"
)

// twoEnvs is one agent running two envs of one config repo, each behind
// its own nginx location (/a/ and /b/ of one site).
type twoEnvs struct {
	*world
	names [2]string
	port  int
}

func newTwoEnvs(t *testing.T) *twoEnvs {
	w := newWorld(t)
	m := &twoEnvs{world: w, names: [2]string{"a" + w.d.RunID, "b" + w.d.RunID}, port: testenv.FreePort(t)}
	site := fmt.Sprintf("server { listen 127.0.0.1:%d;", m.port)
	for _, n := range m.names {
		w.d.CleanupLabel(t, engine.LabelEnv, n)
		w.d.CleanupLabel(t, "com.docker.compose.project", n)
		// The operator's upstream, before berth's first deploy.
		os.WriteFile(envs.NginxFile(w.nginx.ConfD, n, n+"_web"), []byte(fmt.Sprintf("upstream %s_web { server 127.0.0.1:1; }\n", n)), 0o644)
		site += fmt.Sprintf(" location /%s/ { proxy_pass http://%s_web; }", n, n)
	}
	os.WriteFile(filepath.Join(w.nginx.ConfD, "two.conf"), []byte(site+" }\n"), 0o644)
	w.nginx.Reload(t)
	cfg, _ := os.ReadFile(w.config)
	text := strings.Replace(string(cfg), "env: "+w.env+"\n", fmt.Sprintf("envs: [%s, %s]\n", m.names[0], m.names[1]), 1)
	// The world's probe goes through its own site, not these upstreams.
	text = strings.Replace(text, "  probe_url: "+w.nginx.URL()+"/\n", "", 1)
	os.WriteFile(w.config, []byte(text), 0o600)
	return m
}

// commit pushes one revision holding both envs: each env's web runs
// images[i] in modes[i], with a worker beside it.
func (m *twoEnvs) commit(msg string, images [2]string, modes [2]string) string {
	files := map[string]string{}
	for i, n := range m.names {
		files["envs/"+n+"/compose.yaml"] = fmt.Sprintf(`services:
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000"}
  web:
    image: %[1]s
    environment: {APP_MODE: %[2]s}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: %[3]s_web}
`, images[i], modes[i], n)
	}
	return m.repo.CommitFiles(m.t, msg, files)
}

func (m *twoEnvs) serving(env string) string {
	return version(fmt.Sprintf("http://127.0.0.1:%d/%s/", m.port, env))
}

func (m *twoEnvs) stateOf(env string) reconcile.State {
	st, _ := reconcile.LoadState(filepath.Join(m.state, "envs", env))
	return st
}

func (m *twoEnvs) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !ok() {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, n := range m.names {
				recs, _ := (&reconcile.Journal{Dir: filepath.Join(m.state, "envs", n, "deploys")}).List()
				for _, r := range recs {
					fmt.Fprintf(&b, "  %s %.12s %s ×%d %s: %s\n", n, r.Commit, r.Result, r.Count(), r.Phase, r.Reason)
				}
			}
			t.Fatalf("%s: not within %s; journals:\n%s", what, patience, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two envs on one agent deploy independently: an outage of one (its
// registry unreachable) and then a broken commit of it (its server dies on start)
// leave the other deploying, each has its own state, journal and
// containers, and status, history and metrics carry the env. One listing
// of the branch head serves both envs' passes.
func TestE2E_TwoEnvsOnOneAgentDeployIndependently(t *testing.T) {
	testenv.Parallel(t)
	m := newTwoEnvs(t)
	a, b := m.names[0], m.names[1]
	imgs := map[string]testenv.AppImage{}
	for _, v := range []string{"v1", "v2", "v3"} {
		imgs[v] = testenv.PushApp(t, m.reg, testenv.ImageSpec{Version: v})
		m.d.CleanupImage(imgs[v].Ref())
	}
	// An image on a registry that does not answer: pulling it is an
	// outage, not a verdict.
	dead := fmt.Sprintf("127.0.0.1:%d/berth/testapp@%s", testenv.FreePort(t), imgs["v2"].Digest)

	c1 := m.commit("v1 both", [2]string{imgs["v1"].Ref(), imgs["v1"].Ref()}, [2]string{"serve", "serve"})
	m.start()
	m.waitFor(t, "v1 live in both envs", func() bool {
		return m.stateOf(a).Live != nil && m.stateOf(a).Live.Commit == c1 && m.stateOf(b).Live != nil && m.stateOf(b).Live.Commit == c1
	})
	if m.serving(a) != "version=v1" || m.serving(b) != "version=v1" {
		t.Fatalf("serving %q / %q", m.serving(a), m.serving(b))
	}

	t.Run("an outage of one env leaves the other deploying", func(t *testing.T) {
		c2 := m.commit("a's registry is down, b v2", [2]string{dead, imgs["v2"].Ref()}, [2]string{"serve", "serve"})
		m.waitFor(t, "b on v2 while a waits out its outage", func() bool {
			recs, _ := (&reconcile.Journal{Dir: filepath.Join(m.state, "envs", a, "deploys")}).List()
			return m.stateOf(b).Live.Commit == c2 && m.serving(b) == "version=v2" &&
				len(recs) > 0 && recs[0].Result == reconcile.ResultOutage && recs[0].Commit == c2
		})
		if m.serving(a) != "version=v1" || m.stateOf(a).Live.Commit != c1 || m.stateOf(a).Failed != nil {
			t.Fatalf("a: serving %q, state %+v", m.serving(a), m.stateOf(a))
		}
	})
	t.Run("a broken commit of one env leaves the other deploying", func(t *testing.T) {
		c3 := m.commit("a dies on start, b v3", [2]string{imgs["v3"].Ref(), imgs["v3"].Ref()}, [2]string{"crash", "serve"})
		m.waitFor(t, "b on v3, a's v3 failed", func() bool {
			sa := m.stateOf(a)
			return m.stateOf(b).Live.Commit == c3 && m.serving(b) == "version=v3" && sa.Failed != nil && sa.Failed.Commit == c3
		})
		if m.serving(a) != "version=v1" || m.stateOf(a).Live.Commit != c1 {
			t.Fatalf("a: serving %q, state %+v", m.serving(a), m.stateOf(a))
		}
		c4 := m.commit("a fixed", [2]string{imgs["v2"].Ref(), imgs["v3"].Ref()}, [2]string{"serve", "serve"})
		m.waitFor(t, "a on v2", func() bool { return m.stateOf(a).Live.Commit == c4 && m.serving(a) == "version=v2" })
		if m.serving(b) != "version=v3" {
			t.Fatalf("b: serving %q", m.serving(b))
		}
	})

	// What an operator sees carries the env.
	var status struct {
		Envs []struct {
			Env        string
			Live       struct{ Commit string }
			Containers []struct{ Service string }
		}
	}
	m.cli(&status, "status")
	if len(status.Envs) != 2 || status.Envs[0].Env != a || status.Envs[1].Env != b || len(status.Envs[0].Containers) != 2 || len(status.Envs[1].Containers) != 2 {
		t.Fatalf("berth status: %+v", status)
	}
	var one struct{ Env string }
	m.cli(&one, "status", "--env", b)
	if one.Env != b {
		t.Fatalf("berth status --env %s: %+v", b, one)
	}
	var history []struct{ Env, Commit, Result string }
	m.cli(&history, "history", "-n", "100")
	seen := map[string]bool{}
	for _, r := range history {
		seen[r.Env] = true
	}
	if !seen[a] || !seen[b] || len(seen) != 2 {
		t.Fatalf("berth history envs %v", seen)
	}
	var apiStatus struct{ Envs []struct{ Env string } }
	resp, err := m.apiClient().Get("http://berth/api/status")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&apiStatus)
	resp.Body.Close()
	if len(apiStatus.Envs) != 2 {
		t.Fatalf("/api/status: %+v", apiStatus)
	}
	fams := m.scrape(t)
	checksA, checksB := value(fams, "berth_checks_total", "env", a, "result", "ok"), value(fams, "berth_checks_total", "env", b, "result", "ok")
	if value(fams, "berth_deploys_total", "env", b, "result", "succeeded") != 3 || value(fams, "berth_deploys_total", "env", a, "result", "failed") != 1 ||
		value(fams, "berth_live_revision_info", "env", a) != 1 || checksA < 1 || checksB < 1 {
		t.Fatalf("metrics: deploys b %v, failed a %v, checks %v/%v", value(fams, "berth_deploys_total", "env", b, "result", "succeeded"),
			value(fams, "berth_deploys_total", "env", a, "result", "failed"), checksA, checksB)
	}
	// Both converged and idle: one listing per poll serves both envs'
	// passes.
	passes := func(f map[string]*dto.MetricFamily) float64 {
		n := 0.0
		for _, e := range m.names {
			for _, r := range []string{"ok", "verdict", "outage"} {
				n += max(0, value(f, "berth_checks_total", "env", e, "result", r))
			}
		}
		return n
	}
	// Wait for six more passes (a loaded machine may take longer than
	// 6 s at a 1 s poll), then count the listings they took.
	before := m.scrape(t)
	var dPolls, dPasses float64
	m.waitFor(t, "six idle passes", func() bool {
		after := m.scrape(t)
		dPolls, dPasses = value(after, "berth_git_polls_total")-value(before, "berth_git_polls_total"), passes(after)-passes(before)
		return dPasses >= 6
	})
	if dPolls*2 > dPasses+2 {
		t.Fatalf("idle at a 1 s poll: %v listings for %v passes of two envs, want one listing per two passes", dPolls, dPasses)
	}

	// Each env's containers are its own.
	for _, n := range m.names {
		ms, err := engine.New(m.d.Client, nil).List(context.Background(), n)
		if err != nil || len(ms) != 2 {
			t.Fatalf("env %s containers: %v %v", n, ms, err)
		}
	}
}
