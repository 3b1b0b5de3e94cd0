package testenv

import (
	"fmt"
	"os"
	"os/exec"
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
// test log. The binary and its plugins are built by scripts/test with
// internal/testenv/vaultbin/build.sh (see WaitBuilt: on a cold machine it
// builds in the background, and the test's name must say "Vault").
func StartVault(t testing.TB) *Vault {
	t.Helper()
	bin := WaitBuilt(t, "vault")
	// The plugins built beside the minimal Vault (vaultbin/build.sh).
	plugins := bin + "-plugins"
	if fi, err := os.Stat(plugins); err != nil || !fi.IsDir() {
		unavailable(t, "vault", fmt.Errorf("no %s: Vault's AWS auth and Redis plugins are built beside it by internal/testenv/vaultbin/build.sh (scripts/test rebuilds it)", plugins))
	}
	token := "root-" + randomID()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		args := []string{"server", "-dev",
			"-dev-root-token-id=" + token,
			"-dev-listen-address=" + addr,
			"-dev-no-store-token",
		}
		cmd := exec.Command(bin, append(args, "-dev-plugin-dir="+plugins)...)
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
