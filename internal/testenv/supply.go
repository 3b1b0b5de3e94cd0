package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// SOPS returns the sops CLI, v3.13.3, built from the Go module proxy into
// CacheDir (BERTH_SOPS_BIN overrides): the oracle of berth's SOPS reader.
func SOPS(t testing.TB) string {
	t.Helper()
	return cachedTool(t, "BERTH_SOPS_BIN", "sops-v3.13.3",
		"GOBIN=$DIR go install github.com/getsops/sops/v3/cmd/sops@v3.13.3 && mv $DIR/sops $DIR/sops-v3.13.3")
}

// Cosign returns the cosign CLI, v2.6.5, built the same way
// (BERTH_COSIGN_BIN overrides).
func Cosign(t testing.TB) string {
	t.Helper()
	return cachedTool(t, "BERTH_COSIGN_BIN", "cosign-v2.6.5",
		"GOBIN=$DIR go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5 && mv $DIR/cosign $DIR/cosign-v2.6.5")
}

func cachedTool(t testing.TB, env, name, build string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(CacheDir(), name)
	}
	if _, err := os.Stat(p); err != nil {
		unavailable(t, name, fmt.Errorf("%w (build it with DIR=%s: %s)", err, CacheDir(), build))
	}
	return p
}
