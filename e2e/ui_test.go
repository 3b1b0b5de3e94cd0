package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/testenv"
)

// hostileSubject would run script wherever a page wrote it unescaped, and
// hide the text after it with a bidi override.
const hostileSubject = `v3 <script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> ` + "\u202e" + `evil`

// commitUI pushes commit's env (a migration, a worker, a server behind
// nginx) with a job every 3 s.
func (w *world) commitUI(msg string, img testenv.AppImage, webMode string) string {
	compose := w.compose(img, webMode) + `  jobs:
    tick:
      schedule: "@every 3s"
      service: worker
      environment: {APP_MODE: exit}
`
	return w.repo.CommitFiles(w.t, msg, map[string]string{"envs/" + w.env + "/compose.yaml": compose})
}

// listenTCP moves the world's local API from its unix socket to a
// loopback port a browser can reach, and returns the page's URL.
func (w *world) listenTCP() string {
	w.t.Helper()
	addr := freeAddr(w.t)
	b, err := os.ReadFile(w.config)
	if err != nil {
		w.t.Fatal(err)
	}
	cfg := strings.Replace(string(b), `listen: "unix:`+w.apiSock+`"`, `listen: "`+addr+`"`, 1)
	if cfg == string(b) {
		w.t.Fatal("the agent config has no unix listen to replace")
	}
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return "http://" + addr
}

// The host's page in a real browser, against a real agent: v1 → v2 shows
// v2 live with its author and subject; a release that dies before it is healthy
// is rolled back, and the page (updating itself over SSE) draws the
// failed bar with its reason and the rollback's undo steps; the hostile
// subject of that release shows as text and runs nothing; every answer
// carries the CSP.
func TestUI_HostPageInABrowser(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	w.d.CleanupLabel(t, engine.LabelJobEnv, w.env)
	b := newBrowser(t)
	url := w.listenTCP()
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	for _, img := range []testenv.AppImage{v1, v2} {
		w.d.CleanupImage(img.Ref())
	}
	c1 := w.commitUI("v1: the first release", v1, "serve")
	d := w.start()
	d.waitFor(t, "deployed", c1[:12])
	c2 := w.commitUI("v2: faster search", v2, "serve")
	d.waitFor(t, "deployed", c2[:12])

	h := b.open(url + "/")
	csp := header(h, "Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "script-src 'sha256-"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if got := header(h, "X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options: %q", got)
	}
	if got := b.text(".live .subject"); got != "v2: faster search" {
		t.Errorf("live subject %q, want v2's", got)
	}
	if got := b.text(".live .author"); !strings.Contains(got, "berth test") {
		t.Errorf("live author %q", got)
	}
	if got := b.text(".live code"); got != c2 {
		t.Errorf("live commit %q, want %s", got, c2)
	}
	// The live-update script runs (its hash matches the CSP): the badge
	// shows once the event stream is open.
	b.waitJS(`!document.getElementById("live").hidden`, 15*time.Second)
	b.shot("host-v2")

	// v3 dies before it is healthy: rolled back. The page, left open,
	// redraws itself from the event stream.
	c3 := w.commitUI(hostileSubject, v2, "crash")
	d.waitFor(t, "deploy failed and rolled back", c3[:12])
	b.waitText("before it was healthy", 30*time.Second)
	failedBar := eval[string](b, `(function(){var r=document.querySelector("tr.fail rect.p.failed title");return r?r.textContent:""})()`)
	if !strings.Contains(failedBar, "servers") || !strings.Contains(failedBar, "before it was healthy") {
		t.Errorf("the failed bar's part says %q, want the servers phase and its reason", failedBar)
	}
	undo := eval[string](b, `(function(){var r=document.querySelector("tr.fail rect.p.rollback title");return r?r.textContent:""})()`)
	if !strings.Contains(undo, "rollback") || !strings.Contains(undo, "remove") {
		t.Errorf("the rollback's part says %q, want its undo steps", undo)
	}
	if got := b.text("tr.fail td:nth-child(3) bdi"); !strings.Contains(got, "<script>window.__pwned=1</script>") || !strings.Contains(got, `\u202eevil`) {
		t.Errorf("the hostile subject shows as %q, want its text with the override made visible", got)
	}
	if pwned := eval[bool](b, `window.__pwned !== undefined`); pwned {
		t.Error("the hostile subject ran script")
	}
	if got := eval[int](b, `document.querySelectorAll("main script, main img").length`); got != 0 {
		t.Errorf("%d script or img elements in the page's content", got)
	}
	b.shot("host-rolled-back")

	// The failed deploy's own record, from the bar.
	href := eval[string](b, `document.querySelector("tr.fail a").getAttribute("href")`)
	b.open(url + href)
	if got := b.text(".reason"); !strings.Contains(got, "before it was healthy") {
		t.Errorf("the record's reason: %q", got)
	}
	if got := b.text("ol.undone"); !strings.Contains(got, "remove") {
		t.Errorf("the record's undo steps: %q", got)
	}
	if pwned := eval[bool](b, `window.__pwned !== undefined`); pwned {
		t.Error("the hostile subject ran script on the record's page")
	}
	b.shot("deploy-rolled-back")

	// The history, filtered to failures.
	b.open(url + "/history?env=" + w.env + "&result=failed")
	if got := b.text("table.history tbody"); !strings.Contains(got, c3[:12]) || strings.Contains(got, c2[:12]) {
		t.Errorf("failed history: %q", got)
	}
	b.shot("history-failed")

	// The job: its strip, and a run's output tail.
	w.eventually("a run of tick", func() bool {
		return len(w.jobRuns("tick")) > 0
	})
	b.open(url + "/jobs/" + w.env + "/tick")
	if got := b.text("ol.strip"); got == "" {
		t.Error("the job's strip is empty")
	}
	b.shot("job")
	if v := b.cspViolations(); len(v) > 0 {
		t.Errorf("the CSP refused something: %q", v)
	}
}
