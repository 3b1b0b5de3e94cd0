package ui

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"berth.dev/berth/engine"
	"berth.dev/berth/jobs"
	"berth.dev/berth/reconcile"
)

// hostile is what a config repo, a journal or etcd may hold: markup that
// would run script, a bidi override, a terminal escape, a NUL, a
// zero-width space, quotes and an ampersand.
const hostile = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=1\">\u202eevil\x1b[31m\x00\u200b'\"&"

// fillStrings sets every string (and every element of every []string) in
// v, a pointer to a struct, to s, recursively.
func fillStrings(v any, s string) {
	fill(reflect.ValueOf(v).Elem(), s)
}

func fill(v reflect.Value, s string) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(s)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), s)
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String && v.Len() == 0 && v.CanSet() {
			v.Set(reflect.ValueOf([]string{s, s}))
			return
		}
		for i := 0; i < v.Len(); i++ {
			fill(v.Index(i), s)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			fill(v.Elem(), s)
		}
	}
}

// testEnv is one env's state dir with a journal and a job store.
type testEnv struct {
	LocalEnv
	journal *reconcile.Journal
}

func newTestEnv(t testing.TB, name string) *testEnv {
	dir := t.TempDir()
	e := &testEnv{LocalEnv: LocalEnv{Name: name, Dir: dir, JournalDir: filepath.Join(dir, "deploys"),
		Jobs: &jobs.Store{Dir: filepath.Join(dir, "jobs")}}}
	e.journal = &reconcile.Journal{Dir: e.JournalDir, Keep: 100000}
	return e
}

func (e *testEnv) write(t testing.TB, recs ...reconcile.Record) {
	t.Helper()
	for i := range recs {
		if err := e.journal.Write(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *testEnv) state(t testing.TB, st reconcile.State) {
	t.Helper()
	if err := reconcile.SaveState(e.Dir, st); err != nil {
		t.Fatal(err)
	}
}

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// deployRecord is a deploy that went live, with its phases.
func deployRecord(id, commit, subject string, at time.Time) reconcile.Record {
	return reconcile.Record{ID: id, Env: "prod", Commit: commit, Author: "Ada <ada@example.org>", Subject: subject,
		Started: at, Finished: at.Add(9 * time.Second), Result: reconcile.ResultSucceeded, Changed: true, Live: commit,
		Steps:  []reconcile.Timing{{Name: "list", Duration: 20 * time.Millisecond}, {Name: "fetch", Duration: 300 * time.Millisecond}, {Name: "load", Duration: 100 * time.Millisecond}, {Name: "plan", Duration: 80 * time.Millisecond}},
		Phases: []reconcile.Timing{{Name: "prepare", Duration: time.Second}, {Name: "cli", Duration: 2 * time.Second}, {Name: "workers", Duration: 2 * time.Second}, {Name: "servers", Duration: 3 * time.Second}, {Name: "retire", Duration: 400 * time.Millisecond}},
		Done:   []string{"run migrate", "start worker-2", "start web-2", "switch web to 127.0.0.1:32770"},
	}
}

// rolledBack is a deploy whose servers never turned healthy.
func rolledBack(id, commit string, at time.Time) reconcile.Record {
	r := deployRecord(id, commit, "v3: break the health check", at)
	r.Result, r.Class, r.Phase = reconcile.ResultFailed, "verdict", "servers"
	r.Reason = "servers: web-3 never became healthy within 60s"
	r.Phases = r.Phases[:4]
	r.Finished = at.Add(12 * time.Second)
	r.Undone = []string{"remove web-3", "start worker-1", "remove worker-3"}
	r.Live = "c0ffee"
	return r
}

// get fetches path from h, as a browser on this host asks for it.
func get(t testing.TB, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9465"+path, nil)
	req = req.WithContext(context.Background())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// parse parses a page, failing the test on markup html.Parse rejects.
func parse(t testing.TB, page string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// walk calls f on every element.
func walk(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func text(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return b.String()
}

// fakeContainers lists fixed containers.
func fakeContainers(cs ...engine.Managed) func(context.Context, string) ([]engine.Managed, error) {
	return func(context.Context, string) ([]engine.Managed, error) { return cs, nil }
}
