// Package metrics is the agent's few counters and gauges, written in the
// Prometheus text exposition format. A dozen series do not need a client
// library (nor its memory); the format is checked in tests with
// Prometheus's own parser.
package metrics

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Registry holds metric families by name.
type Registry struct {
	mu         sync.Mutex
	families   map[string]*Family
	collectors []func() // run before each write (process.go)
}

// Family is one metric name with its series by label values.
type Family struct {
	reg    *Registry
	name   string
	help   string
	kind   string // counter, gauge, summary
	labels []string
	series map[string]*series
}

type series struct {
	values []string
	v      float64 // counter/gauge value, summary sum
	count  uint64  // summary count
}

func (r *Registry) family(name, help, kind string, labels []string) *Family {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.families == nil {
		r.families = map[string]*Family{}
	}
	if f, ok := r.families[name]; ok {
		return f
	}
	f := &Family{reg: r, name: name, help: help, kind: kind, labels: labels, series: map[string]*series{}}
	r.families[name] = f
	return f
}

// Counter registers (or returns) a counter family.
func (r *Registry) Counter(name, help string, labels ...string) *Family {
	return r.family(name, help, "counter", labels)
}

// Gauge registers (or returns) a gauge family.
func (r *Registry) Gauge(name, help string, labels ...string) *Family {
	return r.family(name, help, "gauge", labels)
}

// Summary registers (or returns) a summary family: _sum and _count only.
func (r *Registry) Summary(name, help string, labels ...string) *Family {
	return r.family(name, help, "summary", labels)
}

func (f *Family) get(values []string) *series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s takes %d label values, got %d", f.name, len(f.labels), len(values)))
	}
	key := strings.Join(values, "\x00")
	s := f.series[key]
	if s == nil {
		s = &series{values: slices.Clone(values)}
		f.series[key] = s
	}
	return s
}

// Add adds v to a counter or gauge series.
func (f *Family) Add(v float64, values ...string) {
	f.reg.mu.Lock()
	defer f.reg.mu.Unlock()
	f.get(values).v += v
}

// Inc adds 1.
func (f *Family) Inc(values ...string) { f.Add(1, values...) }

// Set sets a gauge series.
func (f *Family) Set(v float64, values ...string) {
	f.reg.mu.Lock()
	defer f.reg.mu.Unlock()
	f.get(values).v = v
}

// Observe adds one observation to a summary series.
func (f *Family) Observe(v float64, values ...string) {
	f.reg.mu.Lock()
	defer f.reg.mu.Unlock()
	s := f.get(values)
	s.v += v
	s.count++
}

// Value is a counter or gauge series' value (a summary's sum); 0 for a
// series never set.
func (f *Family) Value(values ...string) float64 {
	f.reg.mu.Lock()
	defer f.reg.mu.Unlock()
	if s := f.series[strings.Join(values, "\x00")]; s != nil {
		return s.v
	}
	return 0
}

// Reset drops every series (an info gauge whose labels changed).
func (f *Family) Reset() {
	f.reg.mu.Lock()
	defer f.reg.mu.Unlock()
	f.series = map[string]*series{}
}

// ResetWhere drops the series whose first label has value first (one
// environment's series of an info gauge).
func (f *Family) ResetWhere(first string) {
	f.reg.mu.Lock()
	defer f.reg.mu.Unlock()
	for k, s := range f.series {
		if len(s.values) > 0 && s.values[0] == first {
			delete(f.series, k)
		}
	}
}

// WriteText writes every family in the Prometheus text format, sorted.
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	collectors := slices.Clone(r.collectors)
	r.mu.Unlock()
	for _, c := range collectors {
		c()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(r.families)) {
		f := r.families[name]
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(f.help), name, f.kind)
		for _, key := range slices.Sorted(maps.Keys(f.series)) {
			s := f.series[key]
			lbl := labelText(f.labels, s.values)
			if f.kind == "summary" {
				fmt.Fprintf(&b, "%s_sum%s %s\n%s_count%s %d\n", name, lbl, num(s.v), name, lbl, s.count)
				continue
			}
			fmt.Fprintf(&b, "%s%s %s\n", name, lbl, num(s.v))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func labelText(names, values []string) string {
	if len(names) == 0 {
		return ""
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + `="` + escapeValue(values[i]) + `"`
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func num(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var valueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeValue(s string) string { return valueEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
