package e2e

import (
	"os"
	"testing"

	"berth.dev/berth/internal/testenv"
)

// TestMain starts the package's tests longest first (testenv.LongestFirst):
// the package is the suite's long pole.
func TestMain(m *testing.M) {
	testenv.LongestFirst(m)
	os.Exit(m.Run())
}
