package statedir

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"berth.dev/berth/internal/testenv"
)

// The lock holds the agent's pid (berth rollback, retry, resume and jobs
// run signal it), one agent per state dir; on a full state dir the pid
// still replaces the previous agent's, in the block the file already has.
func TestLockStateDir_PidAndOneAgentPerDir(t *testing.T) {
	dirs := map[string]string{"plain": t.TempDir()}
	if os.Geteuid() == 0 {
		full := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", full).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", full).Run() })
		os.WriteFile(filepath.Join(full, "lock"), []byte("4194304\n"), 0o600) // a previous agent's
		f, _ := os.Create(filepath.Join(full, "filler"))
		for buf := make([]byte, 4096); ; {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
		f.Close()
		dirs["full"] = full
	} else if testenv.Integration() {
		t.Fatal("the full state dir case needs root (tmpfs)")
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			unlock, pidErr, err := Lock(dir)
			if err != nil || pidErr != nil {
				t.Fatalf("lock: %v, pid: %v", err, pidErr)
			}
			defer unlock()
			b, _ := os.ReadFile(filepath.Join(dir, "lock"))
			if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
				t.Fatalf("lock file holds %q, want this pid", b)
			}
			if _, _, err := Lock(dir); err == nil || !strings.Contains(err.Error(), "another berth agent is running") {
				t.Fatalf("a second lock: %v", err)
			}
		})
	}
}
