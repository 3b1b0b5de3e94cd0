package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/google/go-containerregistry/pkg/name"

	"berth.dev/berth/internal/testenv"
)

func pinned(t *testing.T, img testenv.AppImage) name.Digest {
	t.Helper()
	d, err := name.NewDigest(img.Ref())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The host requires the release key's signature: a signed release
// deploys, a redeploy of its present, verified digest asks the registry
// nothing, and a release signed by another key is refused as a verdict
// naming the image and the rule, the signed one still serving.
func TestE2E_SignedImagesOnly(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	release, other := testenv.NewCosignKey(t), testenv.NewCosignKey(t)
	cfg, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, fmt.Sprintf("images:\n  verify:\n    - {prefix: %s/berth, key: %s}\n", w.reg.Host, release.PubFile)...)
	if err := os.WriteFile(w.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(v1.Ref())
	release.SignTag(t, pinned(t, v1), pinned(t, v1))
	w.commit("v1, signed", v1, "serve")
	if code, out := w.once(); code != 0 {
		t.Fatalf("signed v1: exit %d\n%s", code, out)
	}
	if got := w.serving(); got != "version=v1" {
		t.Fatalf("serving %q", got)
	}

	// The same digest again (the web service changes): verified and
	// present, so no registry request at all.
	w.reg.ResetRequests()
	w.commit("v1, web reconfigured", v1, "")
	if code, out := w.once(); code != 0 {
		t.Fatalf("v1 again: exit %d\n%s", code, out)
	}
	if reqs := w.reg.Requests(); len(reqs) != 0 {
		t.Errorf("a redeploy of a verified, present digest made %d registry requests: %v", len(reqs), reqs)
	}

	// A release signed by a key the host does not trust: refused.
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	w.d.CleanupImage(v2.Ref())
	other.SignTag(t, pinned(t, v2), pinned(t, v2))
	bad := w.commit("v2, signed by someone else", v2, "serve")
	if code, out := w.once(); code != 1 {
		t.Fatalf("v2 signed by another key: exit %d, want 1 (a verdict)\n%s", code, out)
	}
	if got := w.serving(); got != "version=v1" {
		t.Fatalf("after the refusal serving %q", got)
	}
	var history []struct{ Commit, Result, Reason string }
	w.cli(&history, "history")
	if len(history) == 0 || history[0].Commit != bad || history[0].Result != "failed" {
		t.Fatalf("history %+v", history)
	}
	for _, want := range []string{v2.Ref(), "images.verify[0]", release.PubFile, "a signature this key did not make"} {
		if !strings.Contains(history[0].Reason, want) {
			t.Errorf("the verdict %q does not say %q", history[0].Reason, want)
		}
	}
	for _, c := range w.containers() {
		if strings.Contains(c, bad[:12]) {
			t.Errorf("a container of the refused revision: %s", c)
		}
	}

	// The repository adds a rule of its own (its team's key, a file of the
	// repository): v1, signed by the host's key only, is refused on its
	// next start, and deploys once the team signed it too.
	team := testenv.NewCosignKey(t)
	pub, _ := os.ReadFile(team.PubFile)
	compose := fmt.Sprintf(`services:
  web:
    image: %s
    environment: {APP_MODE: serve, RESTARTED: "1"}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app, file: %s}
  images:
    verify: [{prefix: %s, key: keys/team.pub}]
`, v1.Ref(), w.lbFile, w.reg.Host)
	stricter := w.repo.CommitFiles(t, "the team's key too", map[string]string{"envs/" + w.env + "/compose.yaml": compose, "envs/" + w.env + "/keys/team.pub": string(pub)})
	if code, out := w.once(); code != 1 {
		t.Fatalf("v1 without the team's signature: exit %d, want 1\n%s", code, out)
	}
	w.cli(&history, "history")
	if history[0].Commit != stricter || !strings.Contains(history[0].Reason, "x-berth.images.verify[0]") {
		t.Fatalf("the repository's own rule: %+v", history[0])
	}
	team.SignTag(t, pinned(t, v1), pinned(t, v1))
	w.repo.CommitFiles(t, "signed by the team", map[string]string{"envs/" + w.env + "/README": "signed\n"})
	if code, out := w.once(); code != 0 {
		t.Fatalf("v1 signed by both: exit %d\n%s", code, out)
	}
}

// sopsEncrypt encrypts a dotenv file for recipient with the real sops CLI.
func sopsEncrypt(t *testing.T, bin, recipient, plain string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "plain.env")
	if err := os.WriteFile(src, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "encrypt", "--age", recipient, "--input-type", "dotenv", "--output-type", "dotenv", src)
	cmd.Dir, cmd.Env = dir, []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sops encrypt: %v", err)
	}
	return string(out)
}

// Values a SOPS-encrypted .env holds reach the container like Vault's —
// a variable and a file — decrypted with the host's age key; berth
// validate without the key says which are encrypted; a new value
// redeploys; a file changed after encryption (its MAC) is a verdict; no
// value appears in anything berth wrote or printed.
func TestE2E_SOPSValuesReachTheContainerAndNeverLeak(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	sops := testenv.SOPS(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "age.txt")
	os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600)
	cfg, _ := os.ReadFile(w.config)
	cfg = append(cfg, fmt.Sprintf("sops: {age_key_file: %s}\n", keyFile)...)
	os.WriteFile(w.config, cfg, 0o600)

	img := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(img.Ref())
	values := []string{"e2e-sops-first-" + w.d.RunID, "e2e-sops-second-" + w.d.RunID}
	dotenv := func(v string) string {
		return sopsEncrypt(t, sops, id.Recipient().String(), "DB_PASSWORD="+v+"\nDIGEST_unencrypted="+img.Digest+"\n")
	}
	compose := fmt.Sprintf(`services:
  web:
    image: %s@${DIGEST_unencrypted}
    environment: {APP_PRINT_ENV: DB_PASSWORD, APP_PRINT_FILES: /run/secrets/db_password}
    x-berth:
      role: server
      port: 8080
      secrets: {DB_PASSWORD: "sops:.env#DB_PASSWORD"}
      secret_files: {db_password: "sops:.env#DB_PASSWORD"}
x-berth:
  lb: {type: nginx, upstream: app, file: %s}
`, img.Repo, w.lbFile)
	first := map[string]string{"envs/" + w.env + "/compose.yaml": compose, "envs/" + w.env + "/.env": dotenv(values[0])}
	w.repo.CommitFiles(t, "v1 with a SOPS secret", first)

	var printed strings.Builder
	once := func(want int) {
		t.Helper()
		out, err := exec.Command(w.bin, "run", "--once", "--config", w.config, "--log-level", "trace").CombinedOutput()
		printed.Write(out)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != want {
			t.Fatalf("berth run --once: exit %d, want %d\n%s", code, want, out)
		}
	}
	once(0)
	if got := webLog(t, w); !strings.Contains(got, "DB_PASSWORD set sha256="+short(values[0])) ||
		!strings.Contains(got, "testapp file /run/secrets/db_password mode=400 sha256="+short(values[0])) {
		t.Fatalf("the container did not get the SOPS value as a variable and a file: %s", got)
	}

	// berth validate in the repository's CI: no key, the structure checked.
	repoDir := t.TempDir()
	for p, c := range first {
		os.MkdirAll(filepath.Join(repoDir, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(repoDir, p), []byte(c), 0o644)
	}
	out, err := exec.Command(w.bin, "validate", "--policy", w.config, repoDir).CombinedOutput()
	printed.Write(out)
	if err != nil || !strings.Contains(string(out), "envs/"+w.env+"/.env: SOPS, for 1 age recipient; encrypted: DB_PASSWORD; in the clear: DIGEST_unencrypted") {
		t.Fatalf("berth validate without the key: %v\n%s", err, out)
	}

	// A new value: the plan says so without it, and the deploy uses it.
	w.repo.CommitFiles(t, "a new SOPS value", map[string]string{"envs/" + w.env + "/.env": dotenv(values[1])})
	out, _ = exec.Command(w.bin, "plan", "--config", w.config).CombinedOutput()
	printed.Write(out)
	if !strings.Contains(string(out), "web: replace, secrets changed") {
		t.Errorf("berth plan after a new SOPS value:\n%s", out)
	}
	once(0)
	if got := webLog(t, w); !strings.Contains(got, "DB_PASSWORD set sha256="+short(values[1])) {
		t.Fatalf("a new SOPS value did not redeploy: %s", got)
	}

	// The file changed after it was encrypted (a value moved in by hand):
	// the MAC fails, a verdict, the last good revision serving.
	tampered := strings.Replace(dotenv(values[1]), "DIGEST_unencrypted="+img.Digest, "DIGEST_unencrypted="+img.Digest+"\nINJECTED_unencrypted=1", 1)
	bad := w.repo.CommitFiles(t, "a tampered SOPS file", map[string]string{"envs/" + w.env + "/.env": tampered})
	once(1)
	var history []struct{ Commit, Result, Reason string }
	w.cli(&history, "history")
	if len(history) == 0 || history[0].Commit != bad || history[0].Result != "failed" || !strings.Contains(history[0].Reason, "MAC mismatch") {
		t.Fatalf("history %+v", history)
	}
	if got := webLog(t, w); !strings.Contains(got, "DB_PASSWORD set sha256="+short(values[1])) {
		t.Fatalf("the tampered revision replaced the web container: %s", got)
	}

	noValueLeaks(t, w, &printed, values, []string{"status", "--json"}, []string{"history", "--json"})
}
