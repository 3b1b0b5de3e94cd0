package testenv

import "testing"

// SOPS returns the sops CLI, v3.13.3, the oracle of berth's SOPS reader:
// built from the Go module proxy by scripts/test in the background
// (bg_build sops: BERTH_SOPS_BIN), waited for. A test using it carries
// "sops" in its name.
func SOPS(t testing.TB) string {
	t.Helper()
	return WaitBuilt(t, "sops")
}

// Cosign returns the cosign CLI, v2.6.5, built the same way (bg_build
// cosign: BERTH_COSIGN_BIN). A test using it carries "cosign" in its name.
func Cosign(t testing.TB) string {
	t.Helper()
	return WaitBuilt(t, "cosign")
}
