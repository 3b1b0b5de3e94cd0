package reconcile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyDir copies the files of a testdata tree into a fresh dir.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// A state dir written by berth before state files carried a format (format
// 0, testdata/format0) reads as it is, and the agent goes on from it.
func TestStateAndJournal_ReadThePreviousFormat(t *testing.T) {
	dir := copyDir(t, "testdata/format0")
	st, err := LoadState(dir)
	if err != nil || st.Format != 0 || st.Live == nil || st.Live.Commit != "c1" || st.Failed == nil || st.Failed.Commit != "c2" {
		t.Fatalf("state: %+v, %v", st, err)
	}
	j := &Journal{Dir: filepath.Join(dir, "deploys")}
	recs, err := j.List()
	if err != nil || len(recs) != 2 || recs[0].Commit != "c2" || recs[0].Result != ResultFailed || recs[0].Count() != 1 ||
		recs[1].Result != ResultSucceeded || len(recs[1].Phases) != 5 || len(recs[0].OneShots) != 1 {
		t.Fatalf("journal: %+v, %v", recs, err)
	}

	host := newFakeHost()
	src := &fakeSource{head: "c2"} // the failed head: not retried
	a, _ := newAgent(t, src, host)
	a.StateDir, a.Journal = dir, j
	if err := a.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, _ = LoadState(dir)
	if st.Format != StateFormat || st.Live.Commit != "c1" || st.Failed.Commit != "c2" {
		t.Fatalf("state after a pass: %+v", st)
	}
	newest, _ := j.Newest()
	if newest.Format != RecordFormat || newest.Commit != "c1" {
		t.Fatalf("the pass's record: %+v", newest)
	}
}

// A state file from a newer berth is refused with a message, not misread.
func TestState_RefusesANewerFormat(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"format": 99, "live": {"commit": "c1", "at": "2026-11-20T10:15:00Z"}}`), 0o600)
	if _, err := LoadState(dir); err == nil || !strings.Contains(err.Error(), "format 99 is newer") {
		t.Fatalf("LoadState: %v", err)
	}
}
