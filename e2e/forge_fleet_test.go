package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// TestE2E_GiteaFleetOneStatusPerEnv runs three agents of one env (a
// fleet on one etcd) with a forge: block: the commit gets one status for
// the env, posted by the agent holding the reporter role, ending in "live
// on 3/3 hosts" after a rollout in waves; when that agent dies, another
// takes the role and reports the next revision.
func TestE2E_GiteaFleetOneStatusPerEnv(t *testing.T) {
	testenv.Parallel(t)
	w := newFleetWorld(t, 3)
	g := testenv.StartGitea(t)
	gitea := g.CreateRepo(t, "config")
	tok := filepath.Join(t.TempDir(), "status-token")
	os.WriteFile(tok, []byte(g.NewToken(t, "status", "write:repository")+"\n"), 0o600)
	block := fmt.Sprintf("forge:\n  type: gitea\n  api_url: %s/api/v1\n  repo: %s\n  token_file: %s\n", g.URL, gitea.Name, tok)
	for _, h := range w.hosts {
		f, err := os.OpenFile(h.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(block)
		f.Close()
	}
	// The hosts follow the test's Git server; the forge holds the same
	// commits (the statuses need them there).
	mirror := func() {
		push := strings.Replace(gitea.CloneURL(), "http://", "http://"+g.User+":"+g.Token+"@", 1)
		cmd := exec.Command("git", "-C", w.repo.WorkDir(), "push", "-q", "--force", push, "HEAD:refs/heads/main")
		cmd.Env = testenv.GitEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("push to gitea: %v\n%s", err, out)
		}
	}
	statuses := func(sha string) []testenv.GiteaStatus { return gitea.Statuses(t, sha) }
	waitLatest := func(sha, state, desc string) {
		t.Helper()
		w.waitFor(fmt.Sprintf("status %s %q on %.12s", state, desc, sha), 4*time.Minute, func() bool {
			ss := statuses(sha)
			return len(ss) > 0 && ss[0].Status == state && ss[0].Description == desc
		})
	}
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	const waves = "{canary: 1, max_parallel: 1}"

	c1 := w.commit("c1: first release", fleetRev{img: v1, webMode: "serve", migrate: "m1", sleep: "0s", rollout: waves})
	mirror()
	for _, h := range w.hosts {
		h.start()
	}
	w.waitFor("every host live on c1", 4*time.Minute, func() bool { return w.allLive(c1) })
	waitLatest(c1, "success", "live on 3/3 hosts")
	ss := statuses(c1)
	for _, s := range ss {
		if s.Context != "berth/"+w.env {
			t.Errorf("a status of another context: %+v", s)
		}
	}
	t.Logf("c1: %d statuses for a 3-host rollout: %+v", len(ss), ss)
	if len(ss) > 8 {
		t.Errorf("%d statuses: the reporter posts by change, not by host and poll", len(ss))
	}

	// The role's holder dies: another agent takes over and reports c2.
	var holder *fleetHost
	for _, h := range w.hosts {
		if b, _ := os.ReadFile(h.log); strings.Contains(string(b), "holding the forge reporter role") {
			holder = h
		}
	}
	if holder == nil {
		t.Fatal("no agent logged holding the reporter role")
	}
	holder.kill()
	c2 := w.commit("c2: a config change", fleetRev{img: v1, webMode: "serve", marker: "c2", migrate: "m1", sleep: "0s", rollout: waves})
	mirror()
	waitLatest(c2, "success", "live on 2/2 hosts")
	took := ""
	for _, h := range w.hosts {
		if b, _ := os.ReadFile(h.log); h != holder && strings.Contains(string(b), "holding the forge reporter role") {
			took = h.name
		}
	}
	if took == "" {
		t.Error("no other agent took the reporter role")
	}
	t.Logf("%s held the role, then %s", holder.name, took)
}
