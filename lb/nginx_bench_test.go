package lb

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// BenchmarkNginxSwitchUnderLoad measures how long a switch takes (write,
// nginx -t, reload, old workers gone, probe) under keep-alive load, with
// clients of the kind that hold an old worker: besides 8 Go keep-alive
// clients, one client pre-connects (as browsers do) and sends its request
// on the connection 25 s later. nginx keeps such a connection until
// client_header_timeout (60 s), so the worker that accepted it outlives a
// reload: the drain outlier. With worker_shutdown_timeout nginx closes it
// sooner. Each iteration is one switch, 3 s after the previous.
//
//	go test -run '^$' -bench NginxSwitch -benchtime 6x ./lb
func BenchmarkNginxSwitchUnderLoad(b *testing.B) {
	for _, bc := range []struct{ name, main string }{
		{"nginx-defaults", ""},
		{"worker_shutdown_timeout=5s", "worker_shutdown_timeout 5s;"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			backends := []string{testenv.HTTPBackend(b, "a"), testenv.HTTPBackend(b, "b")}
			n := testenv.NewNginx(b)
			n.AddMain(b, bc.main)
			file := filepath.Join(n.ConfD, "berth-app.conf")
			os.WriteFile(filepath.Join(n.ConfD, "site.conf"), []byte("server { listen 127.0.0.1:"+strconv.Itoa(n.Port)+"; location / { proxy_pass http://app; } }\n"), 0o644)
			os.WriteFile(file, []byte("upstream app { server "+backends[0]+"; }\n"), 0o644)
			n.Start(b)
			sw := &Nginx{Upstream: "app", File: file, Command: append([]string{"nginx"}, n.Args()...),
				PidFile: filepath.Join(n.Dir, "nginx.pid"), ProbeURL: n.URL() + "/"}

			l, pc := testenv.StartLoad(b, n.URL()+"/", 8), startPreconnects(n.URL()+"/")
			var took []time.Duration
			i := 0
			for b.Loop() {
				i++
				time.Sleep(3 * time.Second)
				start := time.Now()
				if err := sw.Switch(b.Context(), []string{backends[i%2]}); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			ls := l.Stop()
			sent, failed := ls.Sent, ls.Failed
			pre, preFailed := pc.finish()
			slices.Sort(took)
			b.ReportMetric(took[len(took)/2].Seconds(), "s-switch-p50")
			b.ReportMetric(took[len(took)-1].Seconds(), "s-switch-max")
			b.ReportMetric(float64(failed), "failed")
			b.ReportMetric(float64(preFailed), "preconnect-failed")
			b.Logf("switches %v; %d requests, %d failed; %d pre-connected requests, %d failed", took, sent, failed, pre, preFailed)
		})
	}
}

// preconnects is a client that opens a new connection every 2 s and
// sends its request on it 25 s later: a connection nginx accepted before a
// reload and must still answer after it.
type preconnects struct {
	pre, preFailed atomic.Int64
	stop           chan struct{}
	wg             sync.WaitGroup
}

func startPreconnects(url string) *preconnects {
	l := &preconnects{stop: make(chan struct{})}
	// The pre-connecting client: a new connection every 2 s, used 25 s
	// later (while the load runs).
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		addr := url[len("http://") : len(url)-1]
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				continue
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer conn.Close()
				select {
				case <-l.stop:
					return
				case <-time.After(25 * time.Second):
				}
				l.pre.Add(1)
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if err := req.Write(conn); err != nil {
					l.preFailed.Add(1)
					return
				}
				buf := make([]byte, 12)
				if _, err := io.ReadFull(conn, buf); err != nil || string(buf[9:12]) != "200" {
					l.preFailed.Add(1)
				}
			}()
		}
	}()
	return l
}

func (l *preconnects) finish() (pre, preFailed int64) {
	close(l.stop)
	l.wg.Wait()
	return l.pre.Load(), l.preFailed.Load()
}
