package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	berthOnce sync.Once
	berthPath string
	berthErr  error
)

// BerthBinary builds cmd/agent once per test process, static as
// scripts/build makes it: it is also the init of containers with secret
// files, which may be FROM scratch.
func BerthBinary(t testing.TB) string {
	t.Helper()
	shortSkip(t, "BerthBinary")
	berthOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-bin-")
		if err != nil {
			berthErr = err
			return
		}
		berthPath = filepath.Join(dir, "berth")
		// -tags grpcnotrace as scripts/build: the binary tests measure is
		// the one shipped.
		cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", berthPath, "berth.dev/berth/cmd/agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			berthErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if berthErr != nil {
		t.Fatal(berthErr)
	}
	return berthPath
}
