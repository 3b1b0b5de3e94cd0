package envs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoad_HostileShapesStopBeforeComposeGo: a file compose-go would spend
// minutes on (deep nesting, an alias bomb), a second YAML document (which
// compose-go merges and berth's checks would not see), and a key berth does
// not take (compose-go resolves develop.watch paths on the host while it
// loads) are refused on berth's own parse of the file, with its exact
// message, before compose-go is handed anything.
func TestLoad_HostileShapesStopBeforeComposeGo(t *testing.T) {
	img := "r/app@" + d1
	const f = "envs/prod/compose.yaml"
	top := "services:\n  w: {image: " + img + "}\n"
	// A host symlink whose target names the marker: the message must not
	// quote it (compose-go's EvalSymlinks error did).
	hostDir := t.TempDir()
	if err := os.Symlink("/nonexistent/"+marker, filepath.Join(hostDir, "link")); err != nil {
		t.Fatal(err)
	}
	var bomb strings.Builder
	bomb.WriteString(top + "x-a0: &a0 [x, x]\n")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&bomb, "x-a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "nested 9,999 levels",
			files: map[string]string{f: top + "x-deep: " + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + "\n"},
			want:  []string{f + ": is nested more than 64 levels deep (berth refuses it before loading it further)"},
		},
		{
			name:  "nested 9,999 levels in an included file",
			files: map[string]string{f: "include: [inc/c.yaml]\n" + top, "envs/prod/inc/c.yaml": "x-deep: " + strings.Repeat("{a: ", 9999) + "1" + strings.Repeat("}", 9999) + "\n"},
			want:  []string{"envs/prod/inc/c.yaml: is nested more than 64 levels deep (berth refuses it before loading it further)"},
		},
		{
			name:  "an alias bomb",
			files: map[string]string{f: bomb.String()},
			want:  []string{f + ": holds more than 100000 YAML nodes (aliases expanded) (berth refuses it before loading it further)"},
		},
		{
			name:  "a second YAML document",
			files: map[string]string{f: top + "---\nservices:\n  w: {privileged: true, develop: {watch: [{path: /etc, action: sync}]}}\n"},
			want:  []string{f + ": holds more than one YAML document (berth refuses it before loading it further)"},
		},
		{
			name:  "develop.watch of a host symlink",
			files: map[string]string{f: "services:\n  w:\n    image: " + img + "\n    develop: {watch: [{path: " + hostDir + "/link/sub, action: rebuild}]}\n"},
			want:  []string{f + `:w:develop: "develop" is not supported by berth yet (remove it; berth would otherwise ignore it)`},
		},
		{
			name: "a key berth does not take in an included file",
			files: map[string]string{
				f:                      "include: [inc/c.yaml]\n" + top,
				"envs/prod/inc/c.yaml": "services:\n  x:\n    image: " + img + "\n    develop: {watch: [{path: " + hostDir + "/link/sub, action: rebuild}]}\n    privileged: true\n",
			},
			want: []string{`envs/prod/inc/c.yaml:x:develop: "develop" is not supported by berth yet (remove it; berth would otherwise ignore it)`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, tc.files, Options{})
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// BenchmarkLoad_DeepNesting: refusing a 9,999-level file costs berth's
// parse only (compose-go took a minute on it).
func BenchmarkLoad_DeepNesting(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "envs/prod/compose.yaml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("services:\n  w: {image: x}\nx-deep: "+strings.Repeat("[", 9999)+strings.Repeat("]", 9999)+"\n"), 0o644)
	for b.Loop() {
		if _, err := Load(b.Context(), dir, "prod", Options{}); err == nil {
			b.Fatal("loaded")
		}
	}
}

// TestLoad_PortRangesCountedAsComposeGoInterpolatesThem: a range hidden in
// a variable is counted with the variables compose-go interpolates that
// file with (an included file's own .env, which berth's top-level .env does
// not hold), before compose-go expands it.
func TestLoad_PortRangesCountedAsComposeGoInterpolatesThem(t *testing.T) {
	img := "r/app@" + d1
	const f = "envs/prod/compose.yaml"
	many := "services:\n"
	for i := range 17 {
		many += fmt.Sprintf("  p%d: {image: %s, ports: ['${R}'], x-berth: {stop_first: true}}\n", i, img)
	}
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{
			name: "a range in an included file's .env",
			files: map[string]string{
				f:                            "include: [inc/compose.yaml]\nservices:\n  a: {image: " + img + "}\n",
				"envs/prod/inc/.env":         "R=1-65535:1-65535\n",
				"envs/prod/inc/compose.yaml": "services:\n  p0: {image: " + img + ", ports: ['${R}'], x-berth: {stop_first: true}}\n",
			},
			want: "envs/prod/inc/compose.yaml:p0:ports: port ranges expand to 65535 mappings, more than 256 (publish the ports the service needs)",
		},
		{
			name:  "long syntax, from the top-level .env",
			files: map[string]string{f: "services:\n  w: {image: " + img + ", ports: [{published: '${R}', target: 80}], x-berth: {stop_first: true}}\n", "envs/prod/.env": "R=1-65535\n"},
			want:  f + ":w:ports: port ranges expand to 65535 mappings, more than 256 (publish the ports the service needs)",
		},
		{
			name:  "in an extended file",
			files: map[string]string{f: "services:\n  w: {extends: {file: base.yaml, service: b}}\n", "envs/prod/base.yaml": "services:\n  b: {image: " + img + ", ports: ['${R}'], x-berth: {stop_first: true}}\n", "envs/prod/.env": "R=1000-2000:1000-2000\n"},
			want:  "envs/prod/base.yaml:b:ports: port ranges expand to 1001 mappings, more than 256 (publish the ports the service needs)",
		},
		{
			name:  "many services, each under the limit",
			files: map[string]string{f: many, "envs/prod/.env": "R=1000-1255:1000-1255\n"},
			want:  "the environment's port ranges expand to more than 4096 mappings",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, tc.files, Options{})
			if len(ps) != 1 || !strings.Contains(ps[0].String(), tc.want) {
				t.Errorf("problems:\n%v\nwant one with %q", ps, tc.want)
			}
		})
	}
}

// TestLoad_JobsAreBounded: a repository cannot fill the disk or keep the
// engine busy through its jobs: at most 32 jobs, 1,000 kept runs in all, a
// run at most every 10 s (policy.min_job_interval), and overlapping runs
// (concurrency: allow) only with a timeout that bounds them.
func TestLoad_JobsAreBounded(t *testing.T) {
	const f = "envs/prod/compose.yaml"
	img := "r/app@" + d1
	compose := func(jobs string) string {
		return "services:\n  w: {image: " + img + "}\nx-berth:\n  jobs:\n" + jobs
	}
	job := func(name, body string) string { return "    " + name + ": {service: w, " + body + "}\n" }
	var many, heavy string
	for i := range 33 {
		many += job(fmt.Sprintf("j%02d", i), "schedule: '@daily', history: 1")
	}
	for i := range 3 {
		heavy += job(fmt.Sprintf("h%d", i), "schedule: '@daily', history: 400")
	}
	tests := []struct {
		name   string
		jobs   string
		policy Policy
		want   []string
	}{
		{"33 jobs", many, Policy{}, []string{f + "::x-berth.jobs: 33 jobs are more than 32 (berth runs at most 32 jobs per environment)"}},
		{"1,200 kept runs", heavy, Policy{}, []string{f + "::x-berth.jobs: the jobs keep 1200 runs in all, more than 1000 (lower history: (a run keeps up to 1 MiB of stdout and of stderr; 50 by default))"}},
		{"history of one job", job("j", "schedule: '@daily', history: 5000"), Policy{}, []string{f + "::x-berth.jobs.j.history: 5000 runs is out of range (keep from 1 to 1000 runs)"}},
		{"every second", job("a", "schedule: '@every 1s'") + job("b", "schedule: '*/5 * * * * *'"), Policy{}, []string{
			f + `::x-berth.jobs.a.schedule: "@every 1s" runs every 1s, more often than every 10s (each run is a container: schedule it less often (policy.min_job_interval in /etc/berth/agent.yaml sets the limit))`,
			f + `::x-berth.jobs.b.schedule: "*/5 * * * * *" runs every 5s, more often than every 10s (each run is a container: schedule it less often (policy.min_job_interval in /etc/berth/agent.yaml sets the limit))`,
		}},
		{"every second, allowed by policy", job("a", "schedule: '@every 1s'"), Policy{MinJobInterval: time.Second}, nil},
		{"overlapping runs without a timeout", job("a", "schedule: '@every 1m', concurrency: allow"), Policy{}, []string{
			f + `::x-berth.jobs.a.concurrency: "allow" without a timeout lets runs pile up (set timeout: (at most 10 runs may overlap), or use forbid or replace)`,
		}},
		{"overlapping runs, a long timeout", job("a", "schedule: '@every 1m', concurrency: allow, timeout: 1h"), Policy{}, []string{
			f + `::x-berth.jobs.a.timeout: a timeout of 1h0m0s lets 61 runs overlap (every 1m0s, concurrency: allow), more than 10 (at most 10m0s)`,
		}},
		{"within every bound", job("a", "schedule: '@every 15s', concurrency: allow, timeout: 2m") + job("b", "schedule: '0 3 * * *'"), Policy{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, map[string]string{f: compose(tc.jobs)}, Options{Policy: tc.policy})
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
