package reconcile

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// smallTmpfs mounts a tmpfs of size in a temp dir for the test: a state
// dir that can be filled up or made read-only.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if testenv.Integration() {
			t.Fatal("mounting a tmpfs needs root")
		}
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the file system is full; it returns a func that
// frees the space again.
func fill(t *testing.T, dir string) (free func()) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
			t.Fatal(err)
		}
	}
}

// assertIntact checks that state.json and every journal record parse and
// that no temp file was left behind.
func assertIntact(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "filler" {
			return err
		}
		if strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("%s is not whole: %v", path, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func liveCommit(t *testing.T, dir string) string {
	t.Helper()
	st, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Live == nil {
		return ""
	}
	return st.Live.Commit
}

// fillingSwitch fills the state dir when the balancer switches: the deploy
// goes through, and only the state that records it cannot be written.
type fillingSwitch struct {
	fakeSwitch
	fill func()
}

func (s *fillingSwitch) Switch(ctx context.Context, b []string) error {
	if s.fill != nil {
		s.fill()
		s.fill = nil
	}
	return s.fakeSwitch.Switch(ctx, b)
}

// A full or read-only state dir never leaves a torn state.json or journal
// record; the pass is an outage that says so, returned to the poller, and
// the host goes on with the head once the state dir is writable again.
func TestAgent_FullOrReadOnlyStateDirIsAnOutageAndRecovers(t *testing.T) {
	t.Parallel()
	dir := smallTmpfs(t, "256k")
	host := newFakeHost()
	src := &fakeSource{head: "c1"}
	a, _ := newAgent(t, src, host)
	a.StateDir, a.Journal = dir, &Journal{Dir: filepath.Join(dir, "deploys")}
	sw := &fillingSwitch{}
	a.Deployer.Switcher = func(*envs.Env) Switcher { return sw }
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("full before the deploy", func(t *testing.T) {
		free := fill(t, dir)
		src.head = "c2"
		err := a.Check(ctx)
		if !failure.IsOutage(err) || !strings.Contains(err.Error(), "state dir "+dir+" is full") {
			t.Fatalf("Check: %v, want an outage saying the state dir is full", err)
		}
		assertIntact(t, dir)
		if got := liveCommit(t, dir); got != "c1" || strings.Join(host.running(), ",") != "web@c1" {
			t.Fatalf("live %s, running %v: want c1 kept", got, host.running())
		}
		err = a.Check(ctx)
		if !failure.IsOutage(err) {
			t.Fatalf("still full: %v", err)
		}
		free()
		if err := a.Check(ctx); err != nil {
			t.Fatalf("space is back: %v", err)
		}
		if got := liveCommit(t, dir); got != "c2" || strings.Join(host.running(), ",") != "web@c2" {
			t.Fatalf("live %s, running %v: want c2", got, host.running())
		}
		assertIntact(t, dir)
	})

	t.Run("full after the switch: rolled back, whole", func(t *testing.T) {
		var free func()
		sw.fill = func() { free = fill(t, dir) }
		src.head = "c3"
		err := a.Check(ctx)
		if !failure.IsOutage(err) || !strings.Contains(err.Error(), "retire: state dir "+dir+" is full") {
			t.Fatalf("Check: %v, want an outage: the journal could not record retire", err)
		}
		assertIntact(t, dir)
		if got := liveCommit(t, dir); got != "c2" || strings.Join(host.running(), ",") != "web@c2" || sw.backends[0] != "127.0.0.1:32768" {
			t.Fatalf("live %s, running %v: want c2 whole", got, host.running())
		}
		free()
		if err := a.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if got := liveCommit(t, dir); got != "c3" || strings.Join(host.running(), ",") != "web@c3" {
			t.Fatalf("live %s, running %v: want c3", got, host.running())
		}
	})

	t.Run("full while retiring: deployed, recorded once space is back", func(t *testing.T) {
		var free func()
		host.onStop = func() {
			host.onStop = nil
			free = fill(t, dir)
		}
		src.head = "c4"
		err := a.Check(ctx)
		if !failure.IsOutage(err) || !strings.Contains(err.Error(), "c4 is running but could not be recorded live") {
			t.Fatalf("Check: %v, want an outage saying c4 runs but is not recorded", err)
		}
		assertIntact(t, dir)
		if got := liveCommit(t, dir); got != "c3" {
			t.Fatalf("live %s: state.json must still say c3", got)
		}
		free()
		if err := a.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if got := liveCommit(t, dir); got != "c4" || strings.Join(host.running(), ",") != "web@c4" {
			t.Fatalf("live %s, running %v: want c4", got, host.running())
		}
		recs, err := a.Journal.List()
		if err != nil {
			t.Fatal(err)
		}
		var c4 []string
		for _, r := range recs {
			if r.Commit == "c4" {
				c4 = append(c4, string(r.Result))
			}
		}
		// The outage record, kept in memory while the disk was full,
		// reached the journal with the pass that made c4 live.
		if strings.Join(c4, ",") != "succeeded,outage" {
			t.Fatalf("records of c4 %v, want the outage then the pass that made it live", c4)
		}
	})

	t.Run("read-only", func(t *testing.T) {
		if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount ro: %v\n%s", err, out)
		}
		src.head = "c5"
		err := a.Check(ctx)
		if !failure.IsOutage(err) || !strings.Contains(err.Error(), "is read-only") {
			t.Fatalf("Check: %v, want an outage saying the state dir is read-only", err)
		}
		if out, err := exec.Command("mount", "-o", "remount,rw", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount rw: %v\n%s", err, out)
		}
		if err := a.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if got := liveCommit(t, dir); got != "c5" {
			t.Fatalf("live %s, want c5", got)
		}
		assertIntact(t, dir)
	})
}
