package statedir

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/reconcile"
)

// An agent that ran one env keeps its files directly in the state dir;
// configured with several, it moves them into the directory of the env
// they belong to, and each env reads its own. Going back to one env reads
// that env's directory.
func TestStateDir_SingleEnvStateIsAdoptedBySeveralEnvs(t *testing.T) {
	root := t.TempDir()
	single := &testConfig{Env: "shop", StateDir: root}
	if got := single.envDir("shop"); got != root {
		t.Fatalf("one env: state in %s, want the state dir itself", got)
	}
	now := time.Now().UTC()
	if err := reconcile.SaveState(root, reconcile.State{Live: &reconcile.RevisionState{Commit: "c1", At: now}}); err != nil {
		t.Fatal(err)
	}
	if err := single.journalOf("shop").Write(&reconcile.Record{ID: "20261128T080000.000000Z-aaaaaa", Env: "shop", Commit: "c1", Result: reconcile.ResultSucceeded, Started: now}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "migrations.json"), []byte("{}"), 0o600)
	os.MkdirAll(filepath.Join(root, "git"), 0o700)

	several := &testConfig{Envs: []string{"blog", "shop"}, StateDir: root}
	// The CLI of the new config, before the agent restarted, reads shop's
	// state where it is.
	if got := several.envDir("shop"); got != root {
		t.Fatalf("before adoption: shop's state read from %s", got)
	}
	if err := adoptLegacyState(several, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	shop := filepath.Join(root, "envs", "shop")
	if got := several.envDir("shop"); got != shop {
		t.Fatalf("shop's state in %s, want %s", got, shop)
	}
	st, err := reconcile.LoadState(shop)
	if err != nil || st.Live == nil || st.Live.Commit != "c1" {
		t.Fatalf("shop's live revision after the move: %+v, %v", st.Live, err)
	}
	for _, f := range []string{"state.json", "deploys", "migrations.json"} {
		if _, err := os.Stat(filepath.Join(root, f)); !os.IsNotExist(err) {
			t.Errorf("%s is still in the state dir", f)
		}
		if _, err := os.Stat(filepath.Join(shop, f)); err != nil {
			t.Errorf("%s not in shop's dir: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "git")); err != nil {
		t.Fatal("the shared object store moved")
	}
	if got := several.envDir("blog"); got != filepath.Join(root, "envs", "blog") {
		t.Fatalf("blog's state in %s", got)
	}
	// A second start has nothing to move.
	if err := adoptLegacyState(several, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	// Back to one env: its own directory is read.
	if got := single.envDir("shop"); got != shop {
		t.Fatalf("one env again: state in %s, want %s", got, shop)
	}
	recs, _ := single.journalOf("shop").List()
	if len(recs) != 1 {
		t.Fatalf("journal after the moves: %d records", len(recs))
	}
}

// A crash in the middle of the move is finished by the next start; an
// entry on both sides is never overwritten.
func TestStateDir_InterruptedAdoptionFinishes(t *testing.T) {
	root := t.TempDir()
	several := &testConfig{Envs: []string{"shop", "blog"}, StateDir: root}
	now := time.Now().UTC()
	j := &reconcile.Journal{Dir: filepath.Join(root, "deploys")}
	j.Write(&reconcile.Record{ID: "20261128T080000.000000Z-aaaaaa", Env: "shop", Commit: "c1", Result: reconcile.ResultSucceeded, Started: now})
	reconcile.SaveState(root, reconcile.State{Live: &reconcile.RevisionState{Commit: "c1", At: now}})
	os.MkdirAll(filepath.Join(root, "jobs"), 0o700)
	// Killed after state.json moved, before the rest.
	shop := filepath.Join(root, "envs", "shop")
	os.MkdirAll(shop, 0o700)
	os.Rename(filepath.Join(root, "state.json"), filepath.Join(shop, "state.json"))
	os.WriteFile(filepath.Join(root, "state.json"), []byte(`{"format":1}`), 0o600) // not to be moved over shop's
	if err := adoptLegacyState(several, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if !slices.Equal(left, []string{"envs", "state.json"}) {
		t.Fatalf("left in the state dir: %v", left)
	}
	st, _ := reconcile.LoadState(shop)
	if st.Live == nil || st.Live.Commit != "c1" {
		t.Fatalf("shop's state was overwritten: %+v", st)
	}
	if recs, _ := several.journalOf("shop").List(); len(recs) != 1 {
		t.Fatal("the journal did not move")
	}
}

// testConfig is the part of an agent config the layout reads.
type testConfig struct {
	Env      string
	Envs     []string
	StateDir string
}

func (c *testConfig) names() []string {
	if c.Env != "" {
		return []string{c.Env}
	}
	return c.Envs
}

func (c *testConfig) envDir(env string) string { return EnvDir(c.StateDir, c.names(), env) }

func (c *testConfig) journalOf(env string) *reconcile.Journal { return Journal(c.envDir(env)) }

func adoptLegacyState(c *testConfig, log hclog.Logger) error {
	return Adopt(c.StateDir, c.names(), log)
}
