package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/html"

	"berth.dev/berth/fleet"
	"berth.dev/berth/reconcile"
)

func TestTimeline_ARolledBackDeployShowsItsFailedPhaseReasonAndUndoSteps(t *testing.T) {
	r := rolledBack("1", "c0ffee", t0)
	row := recordRow("prod", &r, t0)
	var kinds []string
	for _, p := range row.Parts {
		kinds = append(kinds, p.Kind+":"+p.Name)
	}
	want := "step:list step:fetch step:load step:plan phase:prepare phase:cli phase:workers failed:servers rollback:rollback"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("parts %s\nwant  %s", got, want)
	}
	failed, rb := row.Parts[7], row.Parts[8]
	if !strings.Contains(failed.Title, "never became healthy") || !strings.Contains(failed.Title, "3.0s") {
		t.Errorf("the failed phase's title %q lacks its duration or reason", failed.Title)
	}
	if !strings.Contains(rb.Title, "remove web-3; start worker-1; remove worker-3") {
		t.Errorf("the rollback's title %q lacks its undo steps", rb.Title)
	}
	if rb.Dur != 12*time.Second-8500*time.Millisecond {
		t.Errorf("rollback took %s, want the rest of the pass", rb.Dur)
	}
	tl := layoutTimeline([]timelineRow{row, recordRow("prod", ptr(deployRecord("0", "b", "v2", t0)), t0)})
	if tl.Scale != "15s" || tl.Rows[0].Width > barWidth+1 || tl.Rows[1].Width >= tl.Rows[0].Width {
		t.Errorf("scale %s, widths %.1f %.1f", tl.Scale, tl.Rows[0].Width, tl.Rows[1].Width)
	}
	if len(tl.Rows[1].Marks) != 1 || !strings.Contains(tl.Rows[1].Marks[0].Title, "switch web") {
		t.Errorf("the switch is not marked on the live deploy's bar: %+v", tl.Rows[1].Marks)
	}
}

func ptr[T any](v T) *T { return &v }

func TestHistory_FiltersByResultAndTextAndPages(t *testing.T) {
	e := newTestEnv(t, "prod")
	for i := range 120 {
		r := deployRecord(fmt.Sprintf("20261206T10%04d.000Z-0001", i), fmt.Sprintf("c%039d", i), fmt.Sprintf("release %d", i), t0.Add(time.Duration(i)*time.Minute))
		if i%10 == 0 {
			r = rolledBack(r.ID, r.Commit, r.Started)
		}
		e.write(t, r)
	}
	s := &Server{Local: &Local{Host: "h", Envs: []LocalEnv{e.LocalEnv}}, Now: func() time.Time { return t0 }}
	h := s.Handler()
	for _, tc := range []struct {
		name, query string
		rows        int
		total       string
	}{
		{"first page", "env=prod", historyPerPage, "120 records; page 1 of 3"},
		{"last page", "env=prod&page=3", 20, "page 3 of 3"},
		{"failed only", "env=prod&result=failed", 12, "12 records"},
		{"text", "env=prod&q=RELEASE+11", 10, "10 records"}, // 11, 111…119 (110 is a rollback)
		{"a page past the end is the last", "env=prod&page=99", 20, "page 3 of 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, page := get(t, h, "/history?"+tc.query)
			if res.StatusCode != http.StatusOK {
				t.Fatal(res.StatusCode)
			}
			rows := 0
			walk(parse(t, page), func(n *html.Node) {
				if n.Data == "tr" && len(n.Attr) > 0 && n.Attr[0].Key == "class" {
					rows++
				}
			})
			if rows != tc.rows || !strings.Contains(page, tc.total) {
				t.Errorf("%d rows (want %d); page says %q", rows, tc.rows, between(page, "<p>", "</p>"))
			}
		})
	}
	// The newest first, each linking its record.
	_, page := get(t, h, "/history?env=prod")
	if i, j := strings.Index(page, "release 119"), strings.Index(page, "release 118"); i < 0 || j < i {
		t.Error("the history is not newest first")
	}
	if !strings.Contains(page, `href="/deploy/prod/20261206T100119.000Z-0001"`) {
		t.Error("a row does not link its record")
	}
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	out, _, _ := strings.Cut(rest, b)
	return out
}

// fakeFleet serves fixed overviews.
type fakeFleet struct {
	envs []fleet.Overview
	err  error
	rev  int64
}

func (f *fakeFleet) Envs(context.Context) ([]string, error) {
	var out []string
	for _, o := range f.envs {
		out = append(out, o.Env)
	}
	return out, f.err
}

func (f *fakeFleet) Overview(_ context.Context, envs []string) ([]fleet.Overview, error) {
	var out []fleet.Overview
	for _, o := range f.envs {
		for _, e := range envs {
			if e == o.Env {
				out = append(out, o)
			}
		}
	}
	return out, f.err
}

func (f *fakeFleet) Revision(context.Context) (int64, error) { return f.rev, f.err }

// threeHosts is a fleet of three: one halted canary, one paused, one
// live on the previous revision, and one gone.
func threeHosts(subject string) fleet.Overview {
	c1 := &fleet.Commit{Revision: "aaaa1111aaaa1111", Author: "Ada", Subject: subject}
	now := t0
	return fleet.Overview{
		Env: "prod",
		Hosts: []fleet.HostStatus{
			{HostState: fleet.HostState{Host: "web-1", Live: c1, Result: &fleet.Result{Revision: "bbbb", Class: "verdict", Reason: "web never healthy"}, Failed: "bbbb2222bbbb2222", Version: "1.0", ClockSkew: 90 * time.Second}, Alive: true, LastSeen: now},
			{HostState: fleet.HostState{Host: "web-2", Live: c1, Paused: &fleet.PauseInfo{By: "ops", Reason: "freeze", At: now}}, Alive: true, LastSeen: now},
			{HostState: fleet.HostState{Host: "web-3", Live: c1, Held: "bbbb2222bbbb2222 halted"}, Alive: true, LastSeen: now},
			{HostState: fleet.HostState{Host: "web-4", Live: c1}, Alive: false, LastSeen: now.Add(-time.Hour)},
		},
		Control: fleet.Control{Pause: &fleet.PauseInfo{By: "ops", At: now, Reason: "freeze"}},
		Halts:   []fleet.Halt{{Revision: "bbbb2222bbbb2222", Host: "web-1", Reason: "web never healthy", At: now}},
		Good:    &fleet.Good{Revision: "aaaa1111aaaa1111", At: now.Add(-time.Hour)},
		Rollouts: []fleet.RolloutState{{
			Wave: fleet.Wave{Revision: "bbbb2222bbbb2222", Canaries: []string{"web-1"}, MaxParallel: 1, Known: []string{"web-1", "web-2", "web-3"}, Created: now.Add(-time.Minute), By: "web-1"},
			Done: []fleet.HostResult{{Host: "web-1", OK: false, Reason: "web never healthy", At: now.Add(-30 * time.Second)}},
		}},
		Jobs: []fleet.JobHistory{{Job: "nightly", Runs: []fleet.JobRecord{{Job: "nightly", Scheduled: now, Host: "web-2", Status: fleet.JobSucceeded, Started: now, Ended: now.Add(time.Second)}}}},
	}
}

func TestFleetPage_ShowsHostsHaltsPausesRolloutsAndJobs(t *testing.T) {
	f := &fakeFleet{envs: []fleet.Overview{threeHosts(hostile)}}
	s := &Server{Fleet: &Fleet{Reader: f}, Now: func() time.Time { return t0 }, Log: hclog.New(&hclog.LoggerOptions{Output: testWriter{t}})}
	res, page := get(t, s.Handler(), "/")
	if res.StatusCode != http.StatusOK {
		t.Fatal(res.StatusCode, page)
	}
	checkInert(t, "/", page)
	body := text(parse(t, page))
	for _, want := range []string{"3 hosts alive, 1 gone, 1 with a skewed clock", "paused fleet-wide: freeze", "bbbb2222bbbb halted fleet-wide: web never healthy",
		"Rollout of bbbb2222bbbb", "0 live, 1 failed", "failed: web never healthy", "web-4", "1m30s", "nightly", hostile[:20]} {
		if !strings.Contains(body, want) {
			t.Errorf("the fleet page lacks %q", want)
		}
	}
	for _, want := range []string{`href="/fleet/host/prod/web-2"`, `href="/fleet/jobs/prod/nightly"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the fleet page lacks the link %s", want)
		}
	}
	res, page = get(t, s.Handler(), "/fleet/host/prod/web-2")
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "paused: freeze") {
		t.Errorf("host page: %d", res.StatusCode)
	}
	res, _ = get(t, s.Handler(), "/fleet/host/prod/nobody")
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown host: %d", res.StatusCode)
	}
	// Filtering the hosts.
	_, page = get(t, s.Handler(), "/?env=prod&state=gone")
	if !strings.Contains(page, "1 of 4 hosts") {
		t.Errorf("state=gone: %q", between(page, "<p>1", "</p>"))
	}
}

func TestFleetPage_SaysSoWhenEtcdIsDown(t *testing.T) {
	f := &fakeFleet{err: fmt.Errorf("context deadline exceeded")}
	s := &Server{Fleet: &Fleet{Reader: f}, Now: func() time.Time { return t0 }}
	res, page := get(t, s.Handler(), "/")
	if res.StatusCode != http.StatusOK || !strings.Contains(page, "etcd unreachable") {
		t.Errorf("%d %s", res.StatusCode, between(page, `class="err"`, "</p>"))
	}
}

func TestHostPage_LinksTheFleetAndTheFleetLinksBack(t *testing.T) {
	e := newTestEnv(t, "prod")
	e.write(t, deployRecord("1", "aaaa1111aaaa1111", "v1", t0))
	e.state(t, reconcile.State{Live: &reconcile.RevisionState{Commit: "aaaa1111aaaa1111", DeployID: "1", At: t0}})
	f := &fakeFleet{envs: []fleet.Overview{threeHosts("v1")}}
	s := &Server{Local: &Local{Host: "web-2", Envs: []LocalEnv{e.LocalEnv}}, Fleet: &Fleet{Reader: f, Envs: []string{"prod"}, Host: "web-2"},
		Now: func() time.Time { return t0 }}
	_, page := get(t, s.Handler(), "/")
	if !strings.Contains(page, `href="/fleet"`) || !strings.Contains(page, "v1") || !strings.Contains(page, "Ada &lt;ada@example.org&gt;") {
		t.Error("the host page lacks the fleet link or the live revision's subject and author")
	}
	_, page = get(t, s.Handler(), "/fleet/host/prod/web-2")
	if !strings.Contains(page, "its own page") {
		t.Error("the fleet's page of this host does not link its own page")
	}
}

// testWriter logs to the test.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Everything read from etcd is hostile too: host, env and job names,
// reasons, health, versions, who paused.
func TestFleetPage_HostileEtcdRendersAsText(t *testing.T) {
	o := threeHosts("v1")
	fillStrings(&o, hostile)
	s := &Server{Fleet: &Fleet{Reader: &fakeFleet{envs: []fleet.Overview{o}}}, Now: func() time.Time { return t0 }}
	res, page := get(t, s.Handler(), "/")
	if res.StatusCode != http.StatusOK {
		t.Fatal(res.StatusCode)
	}
	checkInert(t, "/", page)
	if !strings.Contains(text(parse(t, page)), `<script>window.__pwned=1</script>`) {
		t.Error("the hostile strings are not shown as text")
	}
	for _, path := range []string{"/fleet/host/" + url.PathEscape(hostile) + "/" + url.PathEscape(hostile), "/fleet/jobs/" + url.PathEscape(hostile) + "/" + url.PathEscape(hostile)} {
		res, page := get(t, s.Handler(), path)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, res.StatusCode)
		}
		checkInert(t, path, page)
	}
}

// Times read from etcd are hostile: a rollout made centuries ago, or a
// result before its rollout, still draws a bar and an axis inside the
// timeline's width.
func TestTimeline_HostileTimesStayOnTheScale(t *testing.T) {
	for _, created := range []time.Time{t0.Add(-8e18), t0.Add(-9e18), time.Time{}, t0.Add(time.Hour)} {
		o := threeHosts("v1")
		o.Rollouts[0].Created = created
		tl := rolloutTimeline(&o, t0)
		for i, k := range tl.Ticks {
			if k.X < 0 || k.X > barWidth || (i > 0 && k.Label == "0s") || i > 10 {
				t.Fatalf("rollout made %s: tick %d %+v of %+v", created, i, k, tl.Ticks)
			}
		}
		for _, p := range tl.Rows[0].Parts {
			if p.X < 0 || p.W < 0 || p.X+p.W > barWidth+minPart {
				t.Errorf("rollout made %s: part %+v", created, p)
			}
		}
	}
}

// A host whose deploy was rolled back says so on its fleet page, not
// "verdict".
func TestFleetHostPage_ARolledBackDeploySaysRolledBack(t *testing.T) {
	o := threeHosts("v1")
	o.Hosts[0].Result.RolledBack = true
	s := &Server{Fleet: &Fleet{Reader: &fakeFleet{envs: []fleet.Overview{o}}}, Now: func() time.Time { return t0 }}
	res, page := get(t, s.Handler(), "/fleet/host/prod/web-1")
	if body := text(parse(t, page)); res.StatusCode != http.StatusOK || !strings.Contains(body, "rolled back: web never healthy") {
		t.Errorf("%d: the host page does not say the deploy was rolled back", res.StatusCode)
	}
}
