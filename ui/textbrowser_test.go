package ui

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/reconcile"
)

// The page reads in a text browser: w3m (Debian's) renders the host's and
// the fleet's pages as text, with the live revision, the deploys' table
// and the hosts' table in it.
func TestPage_ReadsInATextBrowser(t *testing.T) {
	w3m, err := exec.LookPath("w3m")
	if err != nil {
		if os.Getenv("BERTH_INTEGRATION") == "1" {
			t.Fatalf("w3m unavailable: %v (apt-get install -y w3m; BERTH_INTEGRATION=1 turns this skip into a failure)", err)
		}
		t.Skipf("w3m unavailable: %v", err)
	}
	e := newTestEnv(t, "prod")
	e.write(t, deployRecord("1", "aaaa1111aaaa1111", "v1: the first release", t0), rolledBack("2", "bbbb2222bbbb2222", t0.Add(time.Minute)))
	e.state(t, reconcile.State{Live: &reconcile.RevisionState{Commit: "aaaa1111aaaa1111", DeployID: "1", At: t0}})
	s := &Server{Local: &Local{Host: "web-1", Envs: []LocalEnv{e.LocalEnv}},
		Fleet: &Fleet{Reader: &fakeFleet{envs: []fleet.Overview{threeHosts("v1: the first release")}}, Envs: []string{"prod"}, Host: "web-1"},
		Now:   func() time.Time { return t0 }}
	dump := func(path string) string {
		_, page := get(t, s.Handler(), path)
		f := filepath.Join(t.TempDir(), "page.html")
		if err := os.WriteFile(f, []byte(page), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(w3m, "-dump", "-cols", "200", "-T", "text/html", f).Output()
		if err != nil {
			t.Fatalf("w3m %s: %v", path, err)
		}
		return string(out)
	}
	host := dump("/")
	for _, want := range []string{"Live revision", "Subject\n    v1: the first release", "failed", "never", "became healthy"} {
		if !strings.Contains(host, want) {
			t.Errorf("the host page as text lacks %q:\n%s", want, host)
		}
	}
	// A table row per deploy: its time, commit and duration on one line.
	if line := oneLine(host, "bbbb2222bbbb"); !strings.Contains(line, "2026-12-06") || !strings.Contains(line, "12s") {
		t.Errorf("the deploys' table does not read as a table:\n%s", host)
	}
	fl := dump("/fleet")
	if line := oneLine(fl, "web-2 "); !strings.Contains(line, "paused") || !strings.Contains(line, "aaaa1111aaaa") {
		t.Errorf("the hosts' table does not read as a table: %q\n%s", line, fl)
	}
}

// oneLine is the first line of s containing sub.
func oneLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
