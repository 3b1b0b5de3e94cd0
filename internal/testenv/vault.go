package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// VaultVersion is the Vault release internal/testenv/vaultbin builds.
// v1.21.2–v1.21.4 do not build from the module proxy; v1.21.1 does.
const VaultVersion = "v1.21.1"

// Vault is a real Vault server in dev mode (in-memory storage, unsealed, KV
// v2 mounted at secret/) on a loopback port.
type Vault struct {
	Addr  string // "http://127.0.0.1:PORT"
	Token string // root token, random per test
}

// RootClient is a Vault API client holding the root token, for a test to
// seed secrets, policies and auth methods.
func (v *Vault) RootClient(t testing.TB) *vault.Client {
	t.Helper()
	cfg := vault.DefaultConfig()
	cfg.Address = v.Addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.Token)
	return c
}

// StartVault starts a dev-mode Vault server for the test, its log in the
// test log. The binary is built by scripts/test from
// internal/testenv/vaultbin (BERTH_VAULT_BIN, else CacheDir/vault). On a
// cold machine that build takes many minutes and runs in the background
// while other tests run: when BERTH_VAULT_BUILD_STATUS names a file that
// does not exist yet, StartVault waits for the build to write it.
func StartVault(t testing.TB) *Vault {
	t.Helper()
	if err := waitVaultBuild(t); err != nil {
		unavailable(t, "vault", err)
	}
	bin, err := builtBinary("BERTH_VAULT_BIN", "vault")
	if err != nil {
		unavailable(t, "vault", err)
	}
	token := "root-" + randomID()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		cmd := exec.Command(bin, "server", "-dev",
			"-dev-root-token-id="+token,
			"-dev-listen-address="+addr,
			"-dev-no-store-token",
		)
		// A clean environment: the test's VAULT_* variables must not steer
		// the server, and HOME must not receive a token helper file.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		p, err := startProcess(t, "vault", cmd)
		if err != nil {
			unavailable(t, "vault", err)
		}
		url := "http://" + addr
		if lastErr = p.waitHTTP(url+"/v1/sys/health", 30*time.Second); lastErr == nil {
			return &Vault{Addr: url, Token: token}
		}
		p.stop()
	}
	unavailable(t, "vault", lastErr)
	return nil
}

// waitVaultBuild waits, within the test's deadline, for a background Vault
// build announced through BERTH_VAULT_BUILD_STATUS to finish. The file holds
// "ok" or the reason the build failed.
func waitVaultBuild(t testing.TB) error {
	status := os.Getenv("BERTH_VAULT_BUILD_STATUS")
	if status == "" {
		return nil
	}
	deadline := time.Now().Add(45 * time.Minute)
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
				return fmt.Errorf("vault build failed: %s", s)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault build still running at the test deadline (%s)", status)
		}
		if !logged {
			t.Logf("testenv: waiting for the background vault build (%s)", status)
			logged = true
		}
		time.Sleep(2 * time.Second)
	}
}
