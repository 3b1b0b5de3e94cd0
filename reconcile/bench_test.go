package reconcile

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/testenv"
)

// load sends GETs through nginx from workers goroutines until stopped and
// counts what failed (transport errors and non-200 answers).
type load struct {
	sent, failed atomic.Int64
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startLoad(url string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.sent.Add(1)
				resp, err := c.Get(url)
				if err != nil {
					l.failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) finish() (sent, failed int64) {
	close(l.stop)
	l.wg.Wait()
	return l.sent.Load(), l.failed.Load()
}

// BenchmarkCutoverUnderLoad measures requests lost while a server moves
// from v1 to v2 behind nginx under constant load: berth's cutover, and
// docker-compose up -d on the same app in the same run. Each iteration is
// one cutover; load runs from 1 s before it to 1 s after.
//
//	scripts/bench   (or: go test -run '^$' -bench Cutover -benchtime 5x ./reconcile)
func BenchmarkCutoverUnderLoad(b *testing.B) {
	b.Run("berth", func(b *testing.B) {
		h := newHost(b)
		if testing.Verbose() {
			h.deployer.Log = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Info})
		}
		imgs := []testenv.AppImage{testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v1"}), testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v2"})}
		if _, err := h.deployer.Deploy(b.Context(), Input{Env: h.env(rev{image: imgs[0]}), Revision: "r0"}); err != nil {
			b.Fatal(err)
		}
		// Pull v2 before measuring: the benchmark is about the cutover.
		if _, err := h.engine.EnsureImage(b.Context(), imgs[1].Ref()); err != nil {
			b.Fatal(err)
		}
		var sent, failed int64
		var cutover time.Duration
		i := 0
		for b.Loop() {
			i++
			env := h.env(rev{image: imgs[i%2]})
			l := startLoad(h.nginx.URL()+"/", 8)
			time.Sleep(time.Second)
			start := time.Now()
			res, err := h.deployer.Deploy(b.Context(), Input{Env: env, Revision: fmt.Sprintf("r%d", i)})
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("phases: %v", res.Phases)
			cutover += time.Since(start)
			time.Sleep(time.Second)
			s, f := l.finish()
			sent, failed = sent+s, failed+f
		}
		report(b, sent, failed, cutover)
	})
	b.Run("docker-compose", func(b *testing.B) {
		if _, err := exec.LookPath("docker-compose"); err != nil {
			if testenv.Integration() {
				b.Fatal("docker-compose not installed (scripts/bench installs it)")
			}
			b.Skip("docker-compose not installed (apt-get install docker-compose)")
		}
		h := newHost(b)
		imgs := []testenv.AppImage{testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v1"}), testenv.PushApp(b, h.reg, testenv.ImageSpec{Version: "v2"})}
		port := testenv.FreePort(b)
		dir := b.TempDir()
		up := func(img testenv.AppImage) {
			compose := fmt.Sprintf("version: '3.7'\nservices:\n  web:\n    image: %s\n    ports: ['127.0.0.1:%d:8080']\n    labels: {%s: %s}\n", img.Ref(), port, testenv.TestLabel, h.d.RunID)
			os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(compose), 0o644)
			cmd := exec.Command("docker-compose", "-p", h.name, "up", "-d", "--remove-orphans")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("docker-compose up: %v\n%s", err, out)
			}
		}
		for _, img := range imgs {
			if _, err := h.engine.EnsureImage(b.Context(), img.Ref()); err != nil {
				b.Fatal(err)
			}
		}
		up(imgs[0])
		os.WriteFile(h.lbFile, []byte(fmt.Sprintf("upstream app { server 127.0.0.1:%d; }\n", port)), 0o644)
		h.nginx.Reload(b)
		waitServing(b, h.nginx.URL()+"/")
		var sent, failed int64
		var cutover time.Duration
		i := 0
		for b.Loop() {
			i++
			l := startLoad(h.nginx.URL()+"/", 8)
			time.Sleep(time.Second)
			start := time.Now()
			up(imgs[i%2])
			cutover += time.Since(start)
			waitServing(b, h.nginx.URL()+"/")
			time.Sleep(time.Second)
			s, f := l.finish()
			sent, failed = sent+s, failed+f
		}
		report(b, sent, failed, cutover)
	})
}

func report(b *testing.B, sent, failed int64, cutover time.Duration) {
	b.ReportMetric(float64(sent)/float64(b.N), "requests/op")
	b.ReportMetric(float64(failed)/float64(b.N), "failed/op")
	b.ReportMetric(100*float64(failed)/float64(max(sent, 1)), "failed-%")
	b.ReportMetric(cutover.Seconds()/float64(b.N), "s-cutover/op")
}

func waitServing(b *testing.B, url string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("%s not serving", url)
}
