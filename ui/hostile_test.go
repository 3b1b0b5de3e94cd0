package ui

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html"

	"berth.dev/berth/engine"
	"berth.dev/berth/jobs"
	"berth.dev/berth/migrate"
	"berth.dev/berth/reconcile"
)

// hostileHost is a host whose every repo- and journal-derived string is
// hostile: the record, the state's marks, the containers, the job and its
// output.
func hostileHost(t testing.TB) (*Server, *testEnv) {
	e := newTestEnv(t, "prod")
	rec := rolledBack("20261206T100000.000Z-0001", "c0ffee", t0)
	id := rec.ID
	fillStrings(&rec, hostile)
	rec.ID, rec.Result, rec.Phase = id, reconcile.ResultFailed, "servers"
	rec.OneShots = []migrate.Record{{Service: hostile, Output: hostile + "\n" + hostile, Skipped: ""}}
	rec.Fleet = &reconcile.FleetTurn{Asked: t0, Admitted: t0.Add(time.Second), Outcome: hostile}
	e.write(t, rec)
	live := deployRecord("20261206T090000.000Z-0001", "c0ffee", hostile, t0.Add(-time.Hour))
	live.Author = hostile
	e.write(t, live)
	st := reconcile.State{
		Live:      &reconcile.RevisionState{Commit: "c0ffee", DeployID: live.ID, At: t0},
		Failed:    &reconcile.RevisionState{Commit: hostile, DeployID: id, Reason: hostile, At: t0},
		Pause:     &reconcile.Pause{By: hostile, Reason: hostile, At: t0},
		FleetHeld: &reconcile.FleetHeld{Commit: hostile, Reason: hostile, At: t0},
		Hold:      &reconcile.Hold{Commit: hostile, Head: hostile, At: t0},
	}
	e.state(t, st)
	if err := e.Jobs.SaveListing(&jobs.Listing{Jobs: []jobs.Entry{{Name: "nightly", Schedule: hostile, Timezone: hostile, Next: t0}}}); err != nil {
		t.Fatal(err)
	}
	exit := 3
	run := jobs.Run{ID: "20261206T100000.000Z-00010000", Job: "nightly", Trigger: hostile, Started: t0, Finished: t0.Add(time.Second),
		Status: jobs.StatusFailed, ExitCode: &exit, Reason: hostile, Host: hostile, Revision: hostile}
	if err := e.Jobs.Save(&run); err != nil {
		t.Fatal(err)
	}
	if err := e.Jobs.SaveOutput("nightly", run.ID, []byte(hostile+"\n\x1b]0;title\x07"), []byte(hostile)); err != nil {
		t.Fatal(err)
	}
	var c engine.Managed
	fillStrings(&c, hostile)
	c.Revision, c.State, c.OneOff = "c0ffee", "running", false
	s := &Server{Local: &Local{Host: hostile, Envs: []LocalEnv{e.LocalEnv}, Containers: fakeContainers(c)},
		Now: func() time.Time { return t0.Add(time.Minute) }}
	e.Agent = func() AgentView {
		sp := ServiceSpec{}
		fillStrings(&sp, hostile)
		return AgentView{Pass: &Pass{Commit: hostile, Phase: hostile, Waiting: hostile, Started: t0}, Services: []ServiceSpec{sp}}
	}
	s.Local.Envs[0] = e.LocalEnv
	return s, e
}

// checkInert fails when a page lets hostile input act: a script element
// other than the page's own, an event-handler attribute, a URL that is
// not this server's, or a raw control, bidi or zero-width character.
func checkInert(t *testing.T, path, page string) {
	t.Helper()
	doc := parse(t, page)
	scripts := 0
	walk(doc, func(n *html.Node) {
		if n.Data == "script" {
			scripts++
		}
		if n.Data == "img" || n.Data == "iframe" || n.Data == "object" || n.Data == "embed" {
			t.Errorf("%s: a <%s> element", path, n.Data)
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(strings.ToLower(a.Key), "on") {
				t.Errorf("%s: <%s %s=%q>", path, n.Data, a.Key, a.Val)
			}
			if (a.Key == "href" || a.Key == "action" || a.Key == "src") && a.Val != "" && !strings.HasPrefix(a.Val, "/") && !strings.HasPrefix(a.Val, "?") && !strings.HasPrefix(a.Val, "#") {
				t.Errorf("%s: <%s %s=%q> leaves the server", path, n.Data, a.Key, a.Val)
			}
		}
	})
	if scripts != 1 {
		t.Errorf("%s: %d script elements, want the page's own only", path, scripts)
	}
	if !utf8.ValidString(page) {
		t.Errorf("%s: invalid UTF-8", path)
	}
	for _, r := range page {
		if unsafeRune(r, true) {
			t.Errorf("%s: raw %U on the page", path, r)
			break
		}
	}
}

func TestPage_HostileStringsRenderAsText(t *testing.T) {
	s, e := hostileHost(t)
	h := s.Handler()
	for _, path := range []string{"/", "/history?env=prod", "/history?env=prod&q=%3Cscript", "/deploy/prod/" + "20261206T100000.000Z-0001",
		"/jobs/prod/nightly", "/jobs/prod/nightly/20261206T100000.000Z-00010000"} {
		res, page := get(t, h, path)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d\n%s", path, res.StatusCode, page)
		}
		checkInert(t, path, page)
		if !strings.Contains(text(parse(t, page)), `<script>window.__pwned=1</script>`) && path != "/history?env=prod&q=%3Cscript" {
			t.Errorf("%s: the hostile subject is not shown as text", path)
		}
		if !strings.Contains(page, `\u202eevil\u001b[31m\u0000\u200b`) {
			t.Errorf("%s: the control and bidi characters are not shown escaped", path)
		}
	}
	_ = e
}

func TestPage_SecurityHeadersAndTheScriptsHash(t *testing.T) {
	s, _ := hostileHost(t)
	res, page := get(t, s.Handler(), "/")
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q allows something unsafe", csp)
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	// The inline script and stylesheet are exactly what the CSP hashes.
	doc := parse(t, page)
	walk(doc, func(n *html.Node) {
		if n.Data != "script" && n.Data != "style" {
			return
		}
		sum := sha256.Sum256([]byte(text(n)))
		h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(csp, h) {
			t.Errorf("the inline <%s> hashes to %s, not in the CSP %q", n.Data, h, csp)
		}
	})
	// Every answer carries them, a 404 and the event stream included.
	res, _ = get(t, s.Handler(), "/nothing/here")
	if res.StatusCode != http.StatusNotFound || res.Header.Get("Content-Security-Policy") != csp {
		t.Errorf("404: %d, CSP %q", res.StatusCode, res.Header.Get("Content-Security-Policy"))
	}
}

func TestPage_JobPathsNeverLeaveTheStore(t *testing.T) {
	s, _ := hostileHost(t)
	for _, path := range []string{"/jobs/prod/..%2F..%2F..%2Fetc", "/jobs/prod/nightly/..%2F..%2Fstate", "/jobs/prod/nightly/.hidden",
		"/jobs/other/nightly", "/deploy/prod/..%2Fstate", "/history?env=..%2F"} {
		res, _ := get(t, s.Handler(), path)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, res.StatusCode)
		}
	}
}

func TestClean_MakesEveryUnsafeCharacterVisible(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "deploy v2", "deploy v2"},
		{"bidi override", "a\u202eb", `a\u202eb`},
		{"isolate", "a\u2066b\u2069", `a\u2066b\u2069`},
		{"escape sequence", "\x1b[2J", `\u001b[2J`},
		{"C1 CSI", "a\u009bb", `a\u009bb`},
		{"newline in one line", "a\nb", `a\u000ab`},
		{"zero width", "a\u200bb", `a\u200bb`},
		{"tag characters", "ok\U000E0069\U000E0067\U000E006E", `ok\U000e0069\U000e0067\U000e006e`},
		{"invisible operator", "a\u2062b", `a\u2062b`},
		{"Arabic number sign", "\u0600", `\u0600`},
		{"emoji stay", "✔️ 👩‍💻", `✔️ 👩\u200d💻`},
		{"invalid UTF-8", "a\xffb", `a\xffb`},
		{"markup is left to html/template", "<b>", "<b>"},
		{"RTL letters stay", "שלום", "שלום"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clean(tc.in); got != tc.want {
				t.Errorf("clean(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	long := strings.Repeat("é", maxText)
	if got := clean(long); len(got) > maxText+len("…") || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Errorf("a long string: %d bytes, valid %t", len(got), utf8.ValidString(got))
	}
	if got := cleanBlock("a\tb\nc\x1bd", 100); got != "a\tb\nc\\u001bd" {
		t.Errorf("cleanBlock: %q", got)
	}
}
