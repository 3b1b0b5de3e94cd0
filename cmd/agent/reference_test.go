package main

import (
	"bufio"
	"encoding"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/daemon"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/buildinfo"
	"berth.dev/berth/jobs"
	"berth.dev/berth/migrate"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// docs/reference.md documents every --format json shape as an example
// block tagged with its name; referenceTypes is the Go value each is.
var referenceTypes = map[string]reflect.Type{
	"journal-record":           reflect.TypeFor[reconcile.Record](),
	"berth-status":             reflect.TypeFor[status.Env](),
	"berth-status-several":     reflect.TypeFor[status.All](),
	"berth-history":            reflect.TypeFor[[]reconcile.Record](),
	"berth-jobs-list":          reflect.TypeFor[[]status.JobRow](),
	"berth-jobs-history":       reflect.TypeFor[[]jobs.Run](),
	"berth-jobs-history-fleet": reflect.TypeFor[[]fleet.JobRecord](),
	"berth-jobs-run":           reflect.TypeFor[jobs.Run](),
	"berth-fleet-status":       reflect.TypeFor[status.FleetAll](),
	"berth-validate":           reflect.TypeFor[[]envs.Validation](),
	"berth-plan":               reflect.TypeFor[[]daemon.EnvPlan](),
	"berth-version":            reflect.TypeFor[buildinfo.Info](),
	"berth-request":            reflect.TypeFor[requestJSON](),
}

// referenceBlocks reads docs/reference.md's example blocks by name.
func referenceBlocks(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	name, body := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case name == "" && strings.HasPrefix(line, "```json "):
			name, body = strings.TrimPrefix(line, "```json "), ""
		case name != "" && line == "```":
			out[name], name = body, ""
		case name != "":
			body += line + "\n"
		}
	}
	return out
}

// jsonKeys are the key paths of a JSON document: "live.commit",
// "containers[].name", "hosts[].health.*" (a map's keys, at the paths in
// mapsAt, are data). In a documented example a string "$ref:NAME" stands
// for the keys of block NAME at that place (refs).
func jsonKeys(t *testing.T, doc []byte, mapsAt []string, refs map[string]string) []string {
	t.Helper()
	set := map[string]bool{}
	var walk func(v any, path string, depth int)
	parse := func(doc []byte) any {
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatalf("%v:\n%s", err, doc)
		}
		return v
	}
	walk = func(v any, path string, depth int) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := k
				if path != "" {
					p = path + "." + k
				}
				if slices.Contains(mapsAt, path) {
					p = path + ".*"
				}
				set[p] = true
				walk(e, p, depth)
			}
		case []any:
			for _, e := range x {
				walk(e, path+"[]", depth)
			}
		case string:
			if name, ok := strings.CutPrefix(x, "$ref:"); ok && refs != nil && depth < 4 {
				block, ok := refs[name]
				if !ok {
					t.Fatalf("$ref:%s: no such block in docs/reference.md", name)
				}
				walk(parse([]byte(block)), path, depth+1)
			}
		}
	}
	walk(parse(doc), "", 0)
	return sortedKeys(set)
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

// typeKeys are the key paths a value of t can have in JSON, and the
// paths where t has a map (its keys are data, not names).
func typeKeys(t reflect.Type) (keys, maps []string) {
	set := map[string]bool{}
	var walk func(t reflect.Type, path string, depth int)
	walk = func(t reflect.Type, path string, depth int) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if depth > 12 || t == reflect.TypeFor[time.Time]() || t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) ||
			t.Implements(textMarshaler) {
			return
		}
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			walk(t.Elem(), path+"[]", depth+1)
		case reflect.Map:
			maps = append(maps, path)
			set[path+".*"] = true
			walk(t.Elem(), path+".*", depth+1)
		case reflect.Struct:
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "-" || !f.IsExported() {
					continue
				}
				if f.Anonymous && name == "" {
					walk(f.Type, path, depth+1)
					continue
				}
				if name == "" {
					name = f.Name
				}
				p := name
				if path != "" {
					p = path + "." + name
				}
				set[p] = true
				walk(f.Type, p, depth+1)
			}
		}
	}
	walk(t, "", 0)
	return sortedKeys(set), maps
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkReference checks a command's real output against its documented
// shape: every key it printed is documented, and every documented key is
// one the Go value has.
func checkReference(t *testing.T, name string, real []byte) {
	t.Helper()
	doc, ok := referenceBlocks(t)[name]
	if !ok {
		t.Fatalf("docs/reference.md has no block %q", name)
	}
	typ, ok := referenceTypes[name]
	if !ok {
		t.Fatalf("no Go type for %q", name)
	}
	blocks := referenceBlocks(t)
	known, maps := typeKeys(typ)
	documented := jsonKeys(t, []byte(doc), maps, blocks)
	for _, k := range documented {
		if !slices.Contains(known, k) {
			t.Errorf("%s: docs/reference.md documents %q, which %s does not have", name, k, typ)
		}
	}
	if real == nil {
		return
	}
	for _, k := range jsonKeys(t, real, maps, nil) {
		if !slices.Contains(documented, k) {
			t.Errorf("%s: the output has %q, which docs/reference.md does not document", name, k)
		}
	}
}

// Every documented shape is a real one; every key the commands print is
// documented (fleet status: TestFleetCommands_AgainstEtcd).
func TestReference_JSONShapesAreTheRealOutput(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, "env: prod\nrepo: {url: 'file:///nonexistent'}\nstate_dir: "+dir+"\n")
	cfg, err := agentconfig.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	writeReferenceState(t, cfg)
	for _, c := range []struct {
		block string
		args  []string
	}{
		{"berth-status", []string{"status", "--config", cfgPath, "--format", "json"}},
		{"berth-history", []string{"history", "--config", cfgPath, "--json"}},
		{"berth-jobs-list", []string{"jobs", "list", "--config", cfgPath, "--format", "json"}},
		{"berth-jobs-history", []string{"jobs", "history", "nightly", "--config", cfgPath, "--format", "json"}},
		{"berth-validate", []string{"validate", "--format", "json", examples}},
		{"berth-version", []string{"version", "--format", "json"}},
		{"berth-request", []string{"pause", "--reason", "incident 42", "--config", cfgPath, "--format", "json"}},
	} {
		t.Run(c.block, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, c.args)
			if code != exitOK && c.block != "berth-status" { // status exits 1 without Docker
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if os.Getenv("BERTH_PRINT_REFERENCE") != "" {
				os.WriteFile(filepath.Join(os.Getenv("BERTH_PRINT_REFERENCE"), c.block+".json"), []byte(stdout), 0o644)
			}
			checkReference(t, c.block, []byte(stdout))
		})
	}
	for name := range referenceTypes {
		if slices.Contains([]string{"journal-record", "berth-status-several", "berth-jobs-history-fleet", "berth-jobs-run", "berth-fleet-status", "berth-plan"}, name) {
			t.Run(name+" (documented keys only)", func(t *testing.T) { checkReference(t, name, nil) })
		}
	}
}

// writeReferenceState fills the state dir with one of everything.
func writeReferenceState(t *testing.T, cfg *agentconfig.Config) {
	t.Helper()
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	envDir := cfg.EnvDir("prod")
	st := reconcile.State{
		Live:      &reconcile.RevisionState{Commit: "c1c1c1c1c1c1c1c1", DeployID: "20261201T080000.000000Z-aaaaaa", At: now},
		Failed:    &reconcile.RevisionState{Commit: "c2c2c2c2c2c2c2c2", DeployID: "20261201T090000.000000Z-bbbbbb", At: now, Reason: "servers: never healthy"},
		Pause:     &reconcile.Pause{By: "ada@web-1", At: now, Reason: "incident 41"},
		FleetHeld: &reconcile.FleetHeld{Commit: "c3c3c3c3c3c3c3c3", Reason: "servers: never healthy (on web-2)", At: now},
	}
	if err := reconcile.SaveState(envDir, st); err != nil {
		t.Fatal(err)
	}
	rec := reconcile.Record{ID: "20261201T090000.000000Z-bbbbbb", Env: "prod", Commit: "c2c2c2c2c2c2c2c2", Author: "Ada <ada@example.org>",
		Subject: "raise the pool size", Signer: "0123456789ABCDEF", Started: now, Finished: now.Add(time.Minute), Result: reconcile.ResultFailed,
		Class: "verdict", Phase: reconcile.PhaseServers, Reason: "servers: never healthy", Live: "c1c1c1c1c1c1c1c1", Changed: true,
		Actions: []string{"web: replace, image digest changed"}, Done: []string{"run migrate (exit 0)", "start prod-web-2"}, Undone: []string{"remove prod-web-2"},
		Images: []string{"r/app@sha256:aa"}, Phases: []reconcile.Timing{{Name: reconcile.PhasePrepare, Duration: time.Second}},
		Steps:    []reconcile.Timing{{Name: reconcile.PhaseList, Duration: time.Millisecond}},
		OneShots: []migrate.Record{{Service: "migrate", Skipped: "", ExitCode: 0, TimedOut: false, Interrupted: "", Duration: time.Second, Output: "ok", StdoutDropped: 1, StderrDropped: 1}},
		Passes:   2, LastPass: now.Add(2 * time.Minute), WatchUntil: now.Add(3 * time.Minute),
		Fleet: &reconcile.FleetTurn{Asked: now, Admitted: now, Released: now, Slot: 1, Canary: true, Joining: true, Outcome: "failed"}}
	if err := cfg.Journal("prod").Write(&rec); err != nil {
		t.Fatal(err)
	}
	store := cfg.JobStore("prod")
	if err := store.SaveListing(&jobs.Listing{Revision: "c1c1c1c1c1c1c1c1", Updated: now, Jobs: []jobs.Entry{{Name: "nightly", Schedule: "0 3 * * *",
		Timezone: "Europe/London", Service: "web", Image: "r/app@sha256:aa", Command: []string{"cleanup"}, Timeout: "30m", Concurrency: "forbid",
		Missed: "skip", Jitter: "1m", History: 20, Hash: "h", Next: now, Running: []string{"r1"}, RunOn: "one"}}}); err != nil {
		t.Fatal(err)
	}
	exit := 0
	if err := store.Save(&jobs.Run{ID: "r1", Job: "nightly", Trigger: "schedule", Scheduled: now, Started: now, Finished: now.Add(time.Second), DurationMS: 1000,
		Status: jobs.StatusSucceeded, ExitCode: &exit, Reason: "", Class: "", Image: "r/app@sha256:aa", Revision: "c1c1c1c1c1c1c1c1", JobHash: "h",
		Container: "prod-nightly-r1", StdoutDropped: 1, StderrDropped: 1, Request: "q1", Secrets: true, Host: "web-1", FenceToken: 7}); err != nil {
		t.Fatal(err)
	}
}
