package lb

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// startNginx runs nginx with a site proxying to upstream "app", berth's
// upstream file first pointing at first.
func startNginx(t *testing.T, first string) (*testenv.Nginx, *Nginx) {
	t.Helper()
	n, file := testenv.StartProxy(t, "app", first)
	return n, &Nginx{
		Upstream: "app",
		File:     file,
		Command:  append([]string{"nginx"}, n.Args()...),
		PidFile:  filepath.Join(n.Dir, "nginx.pid"),
		ProbeURL: n.URL() + "/",
	}
}

func TestNginx_SwitchesAndWaitsForOldWorkers(t *testing.T) {
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, sw := startNginx(t, a)
	if got := testenv.Get(t, n.URL()); got != "a" {
		t.Fatalf("before: %q", got)
	}
	if err := sw.Switch(t.Context(), []string{b}); err != nil {
		t.Fatal(err)
	}
	// Switch returns once the old workers are gone: every request from
	// now on reaches b, with no settling sleep.
	for range 20 {
		if got := testenv.Get(t, n.URL()); got != "b" {
			t.Fatalf("after switch: %q", got)
		}
	}
}

func TestNginx_RejectedConfigRestoresThePreviousFile(t *testing.T) {
	a := testenv.HTTPBackend(t, "a")
	n, sw := startNginx(t, a)
	before, _ := os.ReadFile(sw.File)
	err := sw.Switch(t.Context(), []string{"127.0.0.1:99999"})
	if err == nil || !strings.Contains(err.Error(), "nginx rejected "+sw.File) || !failure.IsVerdict(err) {
		t.Fatalf("switch to an invalid port: %v (%s, want a verdict)", err, failure.Of(err))
	}
	after, _ := os.ReadFile(sw.File)
	if string(after) != string(before) {
		t.Fatalf("upstream file not restored:\n%s", after)
	}
	if got := testenv.Get(t, n.URL()); got != "a" {
		t.Fatalf("nginx no longer serves a: %q", got)
	}
}

func TestNginx_FailedProbeSwitchesBack(t *testing.T) {
	a := testenv.HTTPBackend(t, "a")
	n, sw := startNginx(t, a)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	err := sw.Switch(t.Context(), []string{deadAddr})
	if err == nil || !strings.Contains(err.Error(), "probe through nginx") {
		t.Fatalf("switch to a dead backend: %v", err)
	}
	if got := testenv.Get(t, n.URL()); got != "a" {
		t.Fatalf("after the failed switch nginx serves %q, want a", got)
	}
}

func TestNginx_NoFailedRequestsAcrossSwitches(t *testing.T) {
	t.Parallel()
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, sw := startNginx(t, a)
	var failed, sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				resp, err := client.Get(n.URL())
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	for i := range 6 {
		target := []string{b}
		if i%2 == 1 {
			target = []string{a}
		}
		if err := sw.Switch(t.Context(), target); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across 6 switches", failed.Load(), sent.Load())
	}
	t.Logf("%d requests, 0 failed, across 6 switches", sent.Load())
}
