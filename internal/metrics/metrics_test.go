package metrics

import (
	"strings"
	"testing"
)

func TestWriteText_SortedEscapedAndTyped(t *testing.T) {
	r := &Registry{}
	c := r.Counter("b_total", "Things.\nMore.", "job")
	c.Inc(`a"b\c`)
	c.Add(2, "x")
	r.Gauge("a_info", "Info.").Set(1)
	s := r.Summary("c_seconds", "Durations.", "phase")
	s.Observe(1.5, "servers")
	s.Observe(0.5, "servers")
	var b strings.Builder
	r.WriteText(&b)
	want := `# HELP a_info Info.
# TYPE a_info gauge
a_info 1
# HELP b_total Things.\nMore.
# TYPE b_total counter
b_total{job="a\"b\\c"} 1
b_total{job="x"} 2
# HELP c_seconds Durations.
# TYPE c_seconds summary
c_seconds_sum{phase="servers"} 2
c_seconds_count{phase="servers"} 2
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
