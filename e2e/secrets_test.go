package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	vault "github.com/hashicorp/vault/api"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/testenv"
)

// Secrets from a real Vault reach the container as environment variables
// and as files on a tmpfs (x-berth.secret_files), a new version redeploys,
// and no value appears in anything berth wrote or printed.
func TestE2E_SecretsFromVaultReachTheContainerAndNeverLeak(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	values := []string{"e2e-first-s3cret-" + w.d.RunID, "e2e-second-s3cret-" + w.d.RunID}
	root := w.withVault(t, values[0])

	img := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(img.Ref())
	w.repo.CommitFiles(t, "v1 with a secret", map[string]string{"envs/" + w.env + "/compose.yaml": fmt.Sprintf(`services:
  web:
    image: %s
    environment: {APP_PRINT_ENV: DB_PASSWORD, APP_PRINT_FILES: /run/secrets/db_password}
    x-berth:
      role: server
      port: 8080
      secrets: {DB_PASSWORD: "secret/journal/db#password"}
      secret_files: {db_password: "secret/journal/db#password"}
x-berth:
  lb: {type: nginx, upstream: app, file: %s}
`, img.Ref(), w.lbFile)})

	var printed strings.Builder
	once := func() {
		t.Helper()
		cmd := exec.Command(w.bin, "run", "--once", "--config", w.config, "--log-level", "trace")
		out, err := cmd.CombinedOutput()
		printed.Write(out)
		if err != nil {
			t.Fatalf("berth run --once: %v\n%s", err, out)
		}
	}
	once()
	if w.serving() != "version=v1" {
		t.Fatalf("serving %q", w.serving())
	}
	if got := webLog(t, w); !strings.Contains(got, "DB_PASSWORD set sha256="+short(values[0])) ||
		!strings.Contains(got, "testapp file /run/secrets/db_password mode=400 sha256="+short(values[0])) {
		t.Fatalf("the container did not get the secret as a variable and a file: %s", got)
	}

	// berth plan plans with the agent's own code, secret digests included:
	// an up-to-date host with secrets has nothing to change.
	if out, err := exec.Command(w.bin, "plan", "--config", w.config).CombinedOutput(); err != nil || !strings.Contains(string(out), "no change") {
		t.Fatalf("berth plan on an up-to-date host with secrets: %v\n%s", err, out)
	}

	if _, err := root.KVv2("secret").Put(t.Context(), "journal/db", map[string]any{"password": values[1]}); err != nil {
		t.Fatal(err)
	}
	once()
	if got := webLog(t, w); !strings.Contains(got, "DB_PASSWORD set sha256="+short(values[1])) ||
		!strings.Contains(got, "testapp file /run/secrets/db_password mode=400 sha256="+short(values[1])) {
		t.Fatalf("a new secret version did not redeploy: %s", got)
	}

	noValueLeaks(t, w, &printed, values, []string{"status", "--json"}, []string{"history", "--json"}, []string{"plan"})
}

// withVault starts Vault with value at secret/journal/db#password and
// names it in the agent's config with a token that may read it; it
// returns Vault's root client.
func (w *world) withVault(t *testing.T, value string) *vault.Client {
	t.Helper()
	v := testenv.StartVault(t)
	root := v.RootClient(t)
	if _, err := root.KVv2("secret").Put(t.Context(), "journal/db", map[string]any{"password": value}); err != nil {
		t.Fatal(err)
	}
	root.Sys().PutPolicy("berth", `path "secret/data/journal/*" { capabilities = ["read"] }`)
	tok, err := root.Auth().Token().Create(&vault.TokenCreateRequest{Policies: []string{"berth"}})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "vault-token")
	os.WriteFile(tokenFile, []byte(tok.Auth.ClientToken), 0o600)
	cfg, _ := os.ReadFile(w.config)
	cfg = append(cfg, fmt.Sprintf("vault: {address: %s, token_file: %s, check_interval: 1ms}\n", v.Addr, tokenFile)...)
	os.WriteFile(w.config, cfg, 0o600)
	return root
}

// noValueLeaks adds what berth prints for each of commands and every file
// of its state dir (the Git store aside) to printed, and fails the test
// if any of values is in it.
func noValueLeaks(t *testing.T, w *world, printed *strings.Builder, values []string, commands ...[]string) {
	t.Helper()
	for _, args := range commands {
		out, _ := exec.Command(w.bin, append(args, "--config", w.config)...).CombinedOutput()
		printed.Write(out)
	}
	filepath.WalkDir(w.state, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.Contains(p, "/git/") {
			b, _ := os.ReadFile(p)
			printed.Write(b)
		}
		return nil
	})
	for _, v := range values {
		if strings.Contains(printed.String(), v) {
			t.Fatalf("a secret value appears in berth's logs, output or state dir")
		}
	}
	if printed.Len() < 1000 {
		t.Fatalf("grep ran over only %d bytes", printed.Len())
	}
}

func short(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:8])
}

// webLog is the running web container's output.
func webLog(t *testing.T, w *world) string {
	t.Helper()
	ms, err := engine.New(w.d.Client, nil).List(t.Context(), w.env)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Service == "web" && m.State == "running" {
			rc, err := w.d.Client.ContainerLogs(t.Context(), m.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var b strings.Builder
			stdcopy.StdCopy(&b, &b, rc)
			return b.String()
		}
	}
	t.Fatal("no running web container")
	return ""
}
