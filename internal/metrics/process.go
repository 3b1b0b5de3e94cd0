package metrics

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
)

// OnCollect adds f to what runs before each WriteText, to refresh gauges
// whose values live elsewhere (the process, the Git object store).
func (r *Registry) OnCollect(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, f)
}

// RegisterProcess adds the process's own series, read at each scrape: what
// an agent that runs for months must not grow (docs/benchmarks.md, soak).
// Names follow Prometheus's Go client, so dashboards made for it work.
func RegisterProcess(r *Registry) {
	rss := r.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
	fds := r.Gauge("process_open_fds", "Open file descriptors.")
	threads := r.Gauge("process_threads", "OS threads.")
	goroutines := r.Gauge("go_goroutines", "Goroutines that currently exist.")
	inuse := r.Gauge("go_memstats_heap_inuse_bytes", "Heap bytes in in-use spans.")
	alloc := r.Gauge("go_memstats_heap_alloc_bytes", "Heap bytes of allocated objects (live and not yet swept).")
	objects := r.Gauge("go_memstats_heap_objects", "Allocated heap objects.")
	gcs := r.Counter("go_gc_cycles_total", "Completed GC cycles.")
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/gc/heap/objects:objects"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	r.OnCollect(func() {
		metrics.Read(samples) // no stop-the-world, unlike ReadMemStats
		alloc.Set(float64(samples[0].Value.Uint64()))
		inuse.Set(float64(samples[0].Value.Uint64() + samples[1].Value.Uint64()))
		objects.Set(float64(samples[2].Value.Uint64()))
		gcs.Reset()
		gcs.Add(float64(samples[3].Value.Uint64()))
		goroutines.Set(float64(runtime.NumGoroutine()))
		if n, err := openFDs(); err == nil {
			fds.Set(float64(n))
		}
		if st, err := procStatus(); err == nil {
			rss.Set(float64(st["VmRSS"] * 1024))
			threads.Set(float64(st["Threads"]))
		}
	})
}

func openFDs() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names) - 1, err // less the directory itself
}

// procStatus reads the numeric fields of /proc/self/status (kB for sizes).
func procStatus() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, nil
}
