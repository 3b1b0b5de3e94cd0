package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"berth.dev/berth/internal/testenv"
)

// The benchmarks' etcd, its metrics, and a dump of a rollout that seems
// stuck.

// benchServer starts the etcd under test as its own process and returns
// its client URL and metrics URL.
func benchServer(b *testing.B) (string, string) {
	if os.Getenv("BERTH_FLEET_BENCH_SERVER") != "3.7" {
		e := testenv.StartEtcd(b)
		st, _ := e.Status()
		if st != nil {
			b.Logf("etcd %s (process)", st.Version)
		}
		return e.ClientURL, e.ClientURL + "/metrics"
	}
	dir := b.TempDir()
	cu := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	pu := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), "FLEET_HELPER=etcd", "FLEET_ETCD_DIR="+dir, "FLEET_ETCD_CLIENT="+cu, "FLEET_ETCD_PEER="+pu)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(b, 30*time.Second, "etcd 3.7 child healthy", func() bool {
		resp, err := http.Get(cu + "/health")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `"health":"true"`)
	})
	b.Logf("etcd 3.7 (embed, child process)")
	return cu, cu + "/metrics"
}

// embeddedEtcdMain is the "etcd" helper role: etcd's own server (this
// module's v3.7) as a process.
func embeddedEtcdMain() int {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "bench", os.Getenv("FLEET_ETCD_DIR")
	cu, _ := url.Parse(os.Getenv("FLEET_ETCD_CLIENT"))
	pu, _ := url.Parse(os.Getenv("FLEET_ETCD_PEER"))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger, cfg.LogLevel, cfg.LogOutputs = "zap", "error", []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-e.Server.ReadyNotify()
	<-e.Err()
	return 0
}

func scrape(b *testing.B, u string) map[string]*dto.MetricFamily {
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return mf
}

// sum adds every sample of a counter or gauge family.
func sum(mf map[string]*dto.MetricFamily, name string) float64 {
	f := mf[name]
	if f == nil {
		return 0
	}
	var s float64
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			s += m.Counter.GetValue()
		case m.Gauge != nil:
			s += m.Gauge.GetValue()
		case m.Untyped != nil:
			s += m.Untyped.GetValue()
		}
	}
	return s
}

// sumAny is sum of the first family present (names moved across etcd
// releases).
func sumAny(mf map[string]*dto.MetricFamily, names ...string) float64 {
	for _, n := range names {
		if mf[n] != nil {
			return sum(mf, n)
		}
	}
	return 0
}

// dumpSlots logs the queue and the slots of a rollout that seems stuck.
func dumpSlots(b *testing.B, c *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := c.keys("prod")
	for _, p := range []string{k.slots(), k.queue()} {
		resp, err := c.get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			fmt.Fprintf(os.Stderr, "stuck? %s: %v\n", p, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "stuck? %s: %d keys at revision %d\n", p, len(resp.Kvs), resp.Header.Revision)
		for i, kv := range resp.Kvs {
			if i < 12 {
				fmt.Fprintf(os.Stderr, "  %s = %s (create %d, lease %x)\n", kv.Key, kv.Value, kv.CreateRevision, kv.Lease)
			}
		}
	}
}
