package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"berth.dev/berth/engine"
)

// soakAgent is `berth run` at the default log level, its log lines counted.
type soakAgent struct {
	cmd   *exec.Cmd
	lines atomic.Int64
	done  chan struct{}
	mu    sync.Mutex
	tail  []string
}

func startSoakAgent(b *testing.B, w *world) *soakAgent {
	b.Helper()
	a := &soakAgent{cmd: exec.Command(w.bin, "run", "--config", w.config), done: make(chan struct{})}
	pr, pw := io.Pipe()
	a.cmd.Stderr = pw
	if err := a.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			a.lines.Add(1)
			a.mu.Lock()
			a.tail = append(a.tail, s.Text())
			if len(a.tail) > 200 {
				a.tail = a.tail[100:]
			}
			a.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func() { a.cmd.Wait(); pw.Close(); close(a.done) }()
	b.Cleanup(func() { a.cmd.Process.Kill() })
	return a
}

func (a *soakAgent) stop(sig syscall.Signal) {
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(45 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

func (a *soakAgent) lastLines() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.tail[max(0, len(a.tail)-20):], "\n")
}

// soakHook tells the agent of the push; the 1 s poll finds it anyway if
// the webhook is not heard.
func (w *world) soakHook() {
	req, _ := http.NewRequest("POST", "http://berth/hooks/git", strings.NewReader("{}"))
	req.Header.Set("X-Hub-Signature-256", githubSig(w.hookSecret, "{}"))
	if resp, err := w.apiClient().Do(req); err == nil {
		resp.Body.Close()
	}
}

func (w *world) waitAPI(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := w.apiClient().Get("http://berth/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("local API not answering: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLive waits for state.json to name commit as live.
func (w *world) waitLive(b *testing.B, commit string, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var st struct{ Live *struct{ Commit string } }
		if data, err := os.ReadFile(filepath.Join(w.state, "state.json")); err == nil && json.Unmarshal(data, &st) == nil && st.Live != nil && st.Live.Commit == commit {
			return
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(filepath.Join(w.state, "state.json"))
			b.Fatalf("%.12s not live within %s; state: %s", commit, timeout, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *world) soakSample(b *testing.B, a *soakAgent, deploy int) soakSample {
	b.Helper()
	s := soakSample{deploy: deploy, at: time.Now(), v: map[string]float64{}}
	// The process figures are the least of five scrapes 0.7 s apart, each
	// after a forced GC: a job run in flight (every 3 s) adds goroutines,
	// fds and heap for a moment; what leaks raises the floor.
	for i := range 5 {
		if i > 0 {
			time.Sleep(700 * time.Millisecond)
		}
		if resp, err := w.apiClient().Get("http://berth/debug/pprof/heap?gc=1"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		resp, err := w.apiClient().Get("http://berth/metrics")
		if err != nil {
			b.Fatalf("scrape: %v\n%s", err, a.lastLines())
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		for name, metric := range map[string]string{
			"rss": "process_resident_memory_bytes", "heap_live": "go_memstats_heap_alloc_bytes", "heap_objects": "go_memstats_heap_objects",
			"goroutines": "go_goroutines", "open_fds": "process_open_fds", "threads": "process_threads", "git_packs": "berth_git_store_packs",
		} {
			f := fams[metric]
			if f == nil || len(f.Metric) == 0 {
				b.Fatalf("/metrics has no %s", metric)
			}
			if v, ok := s.v[name]; !ok || f.Metric[0].GetGauge().GetValue() < v {
				s.v[name] = f.Metric[0].GetGauge().GetValue()
			}
		}
	}
	filepath.WalkDir(w.state, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				s.v["state_files"]++
				s.v["state_bytes"] += float64(fi.Size())
			}
		}
		return nil
	})
	ctx := context.Background()
	cs, _ := w.d.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+w.env))})
	js, _ := w.d.Client.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", engine.LabelJobEnv+"="+w.env))})
	s.v["containers"] = float64(len(cs) + len(js))
	ims, _ := w.d.Client.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", w.reg.Host+"/*/*"))})
	s.v["images"] = float64(len(ims))
	ns, _ := w.d.Client.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+w.env))})
	s.v["networks"] = float64(len(ns))
	vs, _ := w.d.Client.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.compose.project="+w.env))})
	s.v["volumes"] = float64(len(vs.Volumes))
	return s
}

func (w *world) jobRunCount(b *testing.B) int {
	var rs []jobRun
	cmd := exec.Command(w.bin, "jobs", "history", "tick", "-n", "1000", "--config", w.config, "--json")
	out, err := cmd.Output()
	if err == nil {
		json.Unmarshal(out, &rs)
	}
	return len(rs)
}

// slope is the least-squares growth of a figure per deploy over the samples.
func slope(samples []soakSample, name string) float64 {
	if len(samples) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, y := float64(s.deploy), s.v[name]
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	k := float64(len(samples))
	d := k*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (k*sxy - sx*sy) / d
}

func human(v float64, unit string) string {
	if unit != "B" {
		return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
	}
	a := math.Abs(v)
	switch {
	case a >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}
