package daemon

import (
	"berth.dev/berth/gitsource"
	"berth.dev/berth/internal/metrics"
)

// registerRuntimeMetrics adds the series read at each scrape rather than
// counted: the process's memory, goroutines, threads and open files, and
// the size of the Git object store — what must stay flat over months
// (docs/benchmarks.md, soak).
func registerRuntimeMetrics(r *metrics.Registry, src *gitsource.Source) {
	metrics.RegisterProcess(r)
	packs := r.Gauge("berth_git_store_packs", "Packfiles in the Git object store (compacted past a threshold).")
	size := r.Gauge("berth_git_store_bytes", "Bytes of packfiles and indexes in the Git object store.")
	r.OnCollect(func() {
		if st, err := src.StoreStats(); err == nil {
			packs.Set(float64(st.Packs))
			size.Set(float64(st.Bytes))
		}
	})
}
