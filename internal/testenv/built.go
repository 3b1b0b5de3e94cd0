package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// WaitBuilt returns the binary of a service that scripts/test builds from
// the Go module proxy (bg_build in scripts/lib.sh: Vault, Gitea, …),
// waiting for it when the build is still running in the background.
//
// The binary is BERTH_<NAME>_BIN when set, else name-STAMP in CacheDir when
// internal/testenv/<name>bin is a wrapper module (STAMP hashes its go.mod,
// go.sum and build.sh, if it has one), else CacheDir/name. When
// BERTH_<NAME>_BUILD_STATUS names a file, the build is under way until that
// file holds "ok" or the reason it failed.
//
// A test that needs such a service must carry the service's name in its
// own (TestVault_…, TestE2E_SecretsFromVault…): on a cold machine
// scripts/test runs those tests once that build is done, so no test's
// deadline is spent waiting. WaitBuilt fails a test that breaks the
// rule, so the rule cannot rot.
func WaitBuilt(t testing.TB, name string) string {
	t.Helper()
	shortSkip(t, "WaitBuilt")
	if !strings.Contains(strings.ToLower(t.Name()), strings.ToLower(name)) {
		t.Fatalf("testenv: %s needs the %s binary, built in the background on a cold machine: put %q in the test's name so scripts/test runs it after the build", t.Name(), name, name)
	}
	if err := waitBuildStatus(t, name); err != nil {
		unavailable(t, name, err)
	}
	bin, err := builtBinary(buildEnv(name, "BIN"), name)
	if err != nil {
		unavailable(t, name, err)
	}
	return bin
}

// buildEnv names one of bg_build's variables: BERTH_<NAME>_<what>.
func buildEnv(name, what string) string {
	return "BERTH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_" + what
}

// waitBuildStatus waits, within the test's deadline, for a background build
// announced through BERTH_<NAME>_BUILD_STATUS to finish.
func waitBuildStatus(t testing.TB, name string) error {
	status := os.Getenv(buildEnv(name, "BUILD_STATUS"))
	if status == "" {
		return nil
	}
	deadline := time.Now().Add(60 * time.Minute)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok {
			deadline = td.Add(-30 * time.Second)
		}
	}
	logged := false
	for {
		b, err := os.ReadFile(status)
		if err == nil {
			if s := strings.TrimSpace(string(b)); s != "ok" {
				return fmt.Errorf("%s build failed: %s", name, s)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s build still running at the test deadline (%s)", name, status)
		}
		if !logged {
			t.Logf("testenv: waiting for the background %s build (%s)", name, status)
			logged = true
		}
		time.Sleep(2 * time.Second)
	}
}

// builtBinary finds a built helper binary: the environment variable env
// when set, else name-STAMP in CacheDir when internal/testenv/<name>bin is a
// wrapper module (STAMP hashes its go.mod and go.sum, as scripts/lib.sh
// module_stamp does), else CacheDir/name.
func builtBinary(env, name string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(CacheDir(), name)
		stamp, err := moduleStamp(name + "bin")
		switch {
		case err == nil:
			p = filepath.Join(CacheDir(), name+"-"+stamp)
		case !errors.Is(err, os.ErrNotExist):
			return "", err
		}
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not built (%s; scripts/test builds it): %w", name, env, err)
	}
	return p, nil
}
