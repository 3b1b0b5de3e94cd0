package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"berth.dev/berth/internal/testenv"
)

// apiClient talks HTTP over the agent's unix socket.
func (w *world) apiClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", w.apiSock)
		}}}
}

func (w *world) hook(t testing.TB, header, value, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://berth/hooks/git", strings.NewReader(body))
	if header != "" {
		req.Header.Set(header, value)
	}
	resp, err := w.apiClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func githubSig(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// scrape parses /metrics with Prometheus's own text parser.
func (w *world) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := w.apiClient().Get("http://berth/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount())
		}
	}
	return -1
}

func TestE2E_LocalAPIStatusMetricsAndWebhook(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	// Polls only at start and by webhook.
	// Notifications go to a generic webhook and a Slack-style one.
	var mu sync.Mutex
	var events []map[string]any
	sink := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		m["path"] = r.URL.Path
		mu.Lock()
		events = append(events, m)
		mu.Unlock()
	}))
	defer sink.Close()
	slackFile := filepath.Join(t.TempDir(), "slack-url")
	os.WriteFile(slackFile, []byte(sink.URL+"/slack\n"), 0o600)
	cfg, _ := os.ReadFile(w.config)
	cfgText := strings.Replace(string(cfg), "poll_interval: 1s", "poll_interval: 1h", 1) +
		fmt.Sprintf("notify:\n  - {type: webhook, url: %q}\n  - {type: slack, url_file: %s, events: [deploy_succeeded]}\n", sink.URL+"/hook", slackFile)
	os.WriteFile(w.config, []byte(cfgText), 0o600)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	v3 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v3"})
	for _, img := range []testenv.AppImage{v1, v2, v3} {
		w.d.CleanupImage(img.Ref())
	}
	rev1 := w.commit("v1", v1, "serve")
	w.start()
	// Wait for the state, not a log line: state.json names the live
	// revision before anything reports it.
	w.waitLiveCommit(t, rev1)

	// /healthz, /api/status, /api/history, /api/jobs.
	resp, err := w.apiClient().Get("http://berth/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	var st struct {
		Live       struct{ Commit string }
		Containers []struct{ Service, State string }
	}
	resp, err = w.apiClient().Get("http://berth/api/status")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Live.Commit != rev1 || len(st.Containers) != 2 {
		t.Fatalf("/api/status: %+v", st)
	}
	for _, p := range []string{"/api/history", "/api/jobs"} {
		resp, err := w.apiClient().Get("http://berth" + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		var v []any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || (p == "/api/history" && len(v) != 1) {
			t.Fatalf("%s: %v %v", p, v, err)
		}
		resp.Body.Close()
	}
	// The metrics follow once the pass is journaled: wait for them too.
	var fams map[string]*dto.MetricFamily
	w.eventually("metrics after v1", func() bool {
		fams = w.scrape(t)
		return value(fams, "berth_deploys_total", "result", "succeeded") == 1 && value(fams, "berth_checks_total", "result", "ok") >= 1
	})
	if value(fams, "berth_live_revision_info", "commit", rev1) != 1 || value(fams, "berth_rollbacks_total") > 0 ||
		value(fams, "berth_deploy_phase_seconds", "phase", "servers") != 1 || value(fams, "berth_git_fetches_total") != 1 {
		t.Fatalf("metrics after v1: deploys %v, live %v, phases %v, fetches %v, rollbacks %v", value(fams, "berth_deploys_total", "result", "succeeded"),
			value(fams, "berth_live_revision_info", "commit", rev1), value(fams, "berth_deploy_phase_seconds", "phase", "servers"), value(fams, "berth_git_fetches_total"),
			value(fams, "berth_rollbacks_total"))
	}

	// The deploy was announced on both targets.
	w.eventually("deploy notifications", func() bool {
		mu.Lock()
		defer mu.Unlock()
		var hook, slack bool
		for _, e := range events {
			hook = hook || (e["path"] == "/hook" && e["event"] == "deploy_succeeded" && e["commit"] == rev1)
			slack = slack || (e["path"] == "/slack" && strings.Contains(fmt.Sprint(e["text"]), rev1[:12]))
		}
		return hook && slack
	})

	// Missing and invalid signatures: 401 and no Git traffic.
	rev2 := w.commit("v2", v2, "serve")
	w.git.ResetTraffic()
	polls := value(w.scrape(t), "berth_git_polls_total")
	body := `{"ref":"refs/heads/main"}`
	for _, h := range [][2]string{{"", ""}, {"X-Hub-Signature-256", githubSig("wrong", body)}, {"X-Gitlab-Token", "wrong"}, {"X-Gitea-Signature", "00"}} {
		if code := w.hook(t, h[0], h[1], body); code != http.StatusUnauthorized {
			t.Fatalf("hook with %q: %d, want 401", h[0], code)
		}
	}
	if code := w.hook(t, "X-Hub-Signature-256", githubSig(w.hookSecret, strings.Repeat("x", 2<<20)), strings.Repeat("x", 2<<20)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB hook: %d", code)
	}
	if n, _ := w.git.Traffic(); n != 0 {
		t.Fatalf("refused webhooks made %d Git requests", n)
	}

	// A valid one triggers a check: with a 1 h poll interval, any Git
	// request now is the webhook's. How soon is a benchmark's business
	// (docs/benchmarks.md), not this test's.
	start := time.Now()
	if code := w.hook(t, "X-Hub-Signature-256", githubSig(w.hookSecret, body), body); code != http.StatusAccepted {
		t.Fatalf("valid hook: %d", code)
	}
	w.eventually("a Git request after a valid webhook", func() bool { n, _ := w.git.Traffic(); return n > 0 })
	t.Logf("valid webhook to first Git request: %s", time.Since(start).Round(time.Millisecond))
	w.waitLiveCommit(t, rev2)
	// The refused calls started no check: the valid one's is the only one.
	w.eventually("the valid webhook's check", func() bool { return value(w.scrape(t), "berth_git_polls_total") > polls })
	if got := value(w.scrape(t), "berth_git_polls_total") - polls; got != 1 {
		t.Fatalf("%v checks since the refused webhooks, want the valid one's only", got)
	}

	// 100 valid calls within a second (GitHub, GitLab, Gitea/Forgejo): one fetch.
	rev3 := w.commit("v3", v3, "serve")
	before := value(w.scrape(t), "berth_git_fetches_total")
	var wg sync.WaitGroup
	codes := make(chan int, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := fmt.Sprintf(`{"n":%d}`, i)
			m := hmac.New(sha256.New, []byte(w.hookSecret))
			m.Write([]byte(b))
			hexSig := hex.EncodeToString(m.Sum(nil))
			switch i % 3 {
			case 0:
				codes <- w.hook(t, "X-Hub-Signature-256", "sha256="+hexSig, b)
			case 1:
				codes <- w.hook(t, "X-Gitlab-Token", w.hookSecret, b)
			default:
				codes <- w.hook(t, "X-Forgejo-Signature", hexSig, b)
			}
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusAccepted {
			t.Fatalf("burst hook: %d", c)
		}
	}
	w.waitLiveCommit(t, rev3)
	// A check the burst queued behind the first finds nothing new. One more
	// commit and webhook, once rev3 is live, is the barrier: every check
	// the burst started runs before that commit's goes live, so the
	// fetches are exactly one per new commit.
	rev4 := w.commit("v4", v2, "serve")
	if code := w.hook(t, "X-Hub-Signature-256", githubSig(w.hookSecret, body), body); code != http.StatusAccepted {
		t.Fatalf("valid hook: %d", code)
	}
	w.waitLiveCommit(t, rev4)
	fams = w.scrape(t)
	if got := value(fams, "berth_git_fetches_total") - before; got != 2 {
		t.Fatalf("100 webhooks for one commit, then one for the next, made %v fetches, want 2", got)
	}
	if value(fams, "berth_webhook_requests_total", "result", "unauthorized") != 4 || value(fams, "berth_webhook_requests_total", "result", "accepted") != 102 {
		t.Errorf("webhook counters: %v", fams["berth_webhook_requests_total"])
	}
}
