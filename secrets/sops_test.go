package secrets

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/sopsfile"
)

// ../sopsfile/testdata/shop.env was encrypted by sops 3.13.3 for the key
// in ../sopsfile/testdata/age-key.txt.
func sealedRefs(t *testing.T) (map[string]envs.SecretRef, []age.Identity) {
	t.Helper()
	b, err := os.ReadFile("../sopsfile/testdata/shop.env")
	if err != nil {
		t.Fatal(err)
	}
	f, err := sopsfile.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile("../sopsfile/testdata/age-key.txt")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(strings.NewReader(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]envs.SecretRef{
		"DB_PASSWORD": {Path: "sops:.env", Field: "DB_PASSWORD", Sealed: f},
		"TOKEN":       {Path: "sops:.env", Field: "API_TOKEN", Sealed: f},
	}, ids
}

func TestSOPS_ResolvesLikeVaultWithSaltedDigests(t *testing.T) {
	refs, ids := sealedRefs(t)
	a := &SOPS{Identities: ids, Salt: []byte("host-a")}
	env, digest, err := Mux{SOPS: a}.Resolve(context.Background(), "web", refs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(env, []string{"DB_PASSWORD=s3cr3t", "TOKEN=tok=with=eq"}) {
		t.Errorf("env %v", env)
	}
	_, digestB, _ := Mux{SOPS: &SOPS{Identities: ids, Salt: []byte("host-b")}}.Resolve(context.Background(), "web", refs)
	if digest == digestB || strings.Contains(digest, "s3cr3t") {
		t.Errorf("the digest is not salted by the host: %s %s", digest, digestB)
	}
	// Another host key: a verdict, naming the file, never a value.
	other, _ := age.GenerateX25519Identity()
	_, _, err = Mux{SOPS: &SOPS{Identities: []age.Identity{other}}}.Resolve(context.Background(), "web", refs)
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "decrypt .env") {
		t.Errorf("another key: %v", err)
	}
	// No age key on the host, or no vault for a Vault reference: verdicts.
	refs["VAULTED"] = envs.SecretRef{Path: "kv/app", Field: "x"}
	_, _, err = Mux{}.Resolve(context.Background(), "web", refs)
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "no sops.age_key_file") || !strings.Contains(err.Error(), "no vault") {
		t.Errorf("no backends: %v", err)
	}
}

// A host with Vault alone keeps the digest Vault gave, so upgrading berth
// redeploys nothing.
func TestMux_VaultAloneKeepsItsDigest(t *testing.T) {
	v := &fakeResolver{env: []string{"A=1"}, digest: "d"}
	refs := map[string]envs.SecretRef{"A": {Path: "kv/a", Field: "x"}}
	env, digest, err := Mux{Vault: v, SOPS: &SOPS{}}.Resolve(context.Background(), "web", refs)
	if err != nil || digest != "d" || !slices.Equal(env, []string{"A=1"}) {
		t.Errorf("got %v %q %v", env, digest, err)
	}
}

type fakeResolver struct {
	env    []string
	digest string
}

func (f *fakeResolver) Resolve(context.Context, string, map[string]envs.SecretRef) ([]string, string, error) {
	return f.env, f.digest, nil
}

func TestSaltFile_MadeOnceAndKept(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret-salt")
	a, err := SaltFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SaltFile(p)
	if err != nil || string(a) != string(b) || len(a) != 32 {
		t.Fatalf("salt changed or short: %x %x %v", a, b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("salt file mode %v", fi.Mode())
	}
}
