package metrics

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestRegisterProcess_ReadsTheProcessAtEachScrape(t *testing.T) {
	r := &Registry{}
	RegisterProcess(r)
	scrape := func() map[string]float64 {
		var b strings.Builder
		if err := r.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("does not parse: %v\n%s", err, b.String())
		}
		out := map[string]float64{}
		for name, f := range fams {
			m := f.Metric[0]
			if m.Gauge != nil {
				out[name] = m.Gauge.GetValue()
			} else {
				out[name] = m.Counter.GetValue()
			}
		}
		return out
	}
	first := scrape()
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "process_threads", "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes", "go_memstats_heap_objects"} {
		if first[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, first[name])
		}
	}
	if first["go_memstats_heap_inuse_bytes"] < first["go_memstats_heap_alloc_bytes"] {
		t.Errorf("heap in use %v < allocated %v", first["go_memstats_heap_inuse_bytes"], first["go_memstats_heap_alloc_bytes"])
	}
	// Values follow the process: ten more open files are seen.
	var files []*os.File
	for range 10 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if got := scrape()["process_open_fds"]; got < first["process_open_fds"]+10 {
		t.Errorf("open fds %v after opening 10 more than %v", got, first["process_open_fds"])
	}
}
