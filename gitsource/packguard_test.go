package gitsource

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// TestSource_ABlobBombIsRefusedBeforeItIsUnpacked: a commit holding 200 MiB
// of zeros (a few hundred KB on the wire) is refused as a verdict from the
// pack's object headers, before go-git unpacks it — go-git's index
// builder reads each object whole into memory (a 3 GiB one took the agent
// to 7.3 GB). The fetch allocates a small fraction of the blob's size, and
// the store keeps nothing of it; a normal commit after it fetches fine.
func TestSource_ABlobBombIsRefusedBeforeItIsUnpacked(t *testing.T) {
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	repo.CommitFiles(t, "first", map[string]string{"envs/prod/compose.yaml": "services: {}\n"})
	s := newSource(t, Config{URL: repo.HTTPURL(), Branch: "main"})
	if _, err := s.Fetch(t.Context(), repo.Head(t), ""); err != nil {
		t.Fatal(err)
	}
	before, _ := s.StoreStats()

	big := filepath.Join(repo.WorkDir(), "big")
	if err := os.Truncate(big, 0); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(200 << 20) // zeros, sparse on disk
	f.Close()
	bomb := repo.CommitFiles(t, "a blob bomb", nil)

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, err = s.Fetch(t.Context(), bomb, "")
	runtime.ReadMemStats(&m1)
	if err == nil || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "holds an object of 209715200 bytes, more than the 104857600 berth accepts for one file") {
		t.Fatalf("fetch of the bomb: %v (%s), want a verdict", err, failure.Of(err))
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 32<<20 {
		t.Errorf("the refused fetch allocated %d MiB", alloc>>20)
	}
	after, _ := s.StoreStats()
	if after.Packs != before.Packs {
		t.Errorf("packs %d → %d: the refused pack was kept", before.Packs, after.Packs)
	}
	left, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "store.git", "objects", "pack", "tmp_*"))
	if len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}

	os.Remove(big)
	good := repo.CommitFiles(t, "without it", map[string]string{"envs/prod/compose.yaml": "services: {a: {image: x}}\n"})
	if _, err := s.Fetch(t.Context(), good, ""); err != nil {
		t.Fatalf("fetch after the refused one: %v", err)
	}
}

func TestDeltaHead_TargetSize(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want int64
		ok   bool
	}{
		{[]byte{0x05, 0x80, 0x80, 0x80, 0x80, 0x0c}, 3 << 30, true}, // base 5, target 3 GiB
		{[]byte{0x90, 0x01, 0x7f}, 127, true},
		{[]byte{0x05}, 0, false},
		{nil, 0, false},
	} {
		d := &deltaHead{}
		d.Write(tc.b)
		if got, ok := d.targetSize(); got != tc.want || ok != tc.ok {
			t.Errorf("%x: %d %v, want %d %v", tc.b, got, ok, tc.want, tc.ok)
		}
	}
}
