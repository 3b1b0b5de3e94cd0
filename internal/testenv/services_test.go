package testenv_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"berth.dev/berth/internal/testenv"
)

func TestImages_DistinctVersionsReproducibleDigests(t *testing.T) {
	t.Parallel()
	reg := testenv.StartRegistry(t)
	imgs := testenv.Images(t, reg)
	if imgs.V1.Digest == imgs.V2.Digest {
		t.Fatalf("v1 and v2 share digest %s", imgs.V1.Digest)
	}
	again := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "v1"})
	if again.Digest != imgs.V1.Digest {
		t.Fatalf("rebuilding v1 gave %s, first build %s: digests must be reproducible", again.Digest, imgs.V1.Digest)
	}
	if !strings.HasPrefix(imgs.V1.Ref(), reg.Host+"/"+testenv.AppRepo+"@sha256:") {
		t.Fatalf("ref %q is not pinned by digest in the test registry", imgs.V1.Ref())
	}
}

func TestVault_KVv2WriteRead(t *testing.T) {
	v := testenv.StartVault(t)
	kv := v.RootClient(t).KVv2("secret")
	ctx := t.Context()
	if _, err := kv.Put(ctx, "journal/db", map[string]any{"password": "pw-1"}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := kv.Put(ctx, "journal/db", map[string]any{"password": "pw-2"}); err != nil {
		t.Fatalf("put v2: %v", err)
	}
	s, err := kv.Get(ctx, "journal/db")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if s.Data["password"] != "pw-2" || s.VersionMetadata.Version != 2 {
		t.Fatalf("got %v version %d, want pw-2 version 2", s.Data["password"], s.VersionMetadata.Version)
	}
	old, err := kv.GetVersion(ctx, "journal/db", 1)
	if err != nil || old.Data["password"] != "pw-1" {
		t.Fatalf("version 1: %v %v", old, err)
	}
}

func TestGitServer_CloneAfterCommit(t *testing.T) {
	g := testenv.StartGitServer(t, testenv.WithBasicAuth("berth", "token-123"))
	repo := g.NewRepo(t, "config")
	first := repo.CommitFiles(t, "first", map[string]string{"envs/prod/compose.yaml": "services: {}\n"})
	second := repo.CommitFiles(t, "second", map[string]string{"envs/prod/.env": "TAG=v2\n"})
	if first == second {
		t.Fatal("two commits share an id")
	}

	t.Run("smart HTTP with basic auth", func(t *testing.T) {
		dir := t.TempDir()
		r, err := git.PlainClone(dir, false, &git.CloneOptions{
			URL:  repo.HTTPURL(),
			Auth: &githttp.BasicAuth{Username: "berth", Password: "token-123"},
		})
		if err != nil {
			t.Fatalf("clone: %v", err)
		}
		head, _ := r.Head()
		if head.Hash().String() != second {
			t.Fatalf("head %s, want %s", head.Hash(), second)
		}
		b, err := os.ReadFile(filepath.Join(dir, "envs/prod/.env"))
		if err != nil || string(b) != "TAG=v2\n" {
			t.Fatalf(".env = %q, %v", b, err)
		}
	})
	t.Run("smart HTTP refuses a wrong password", func(t *testing.T) {
		_, err := git.PlainClone(t.TempDir(), false, &git.CloneOptions{
			URL:  repo.HTTPURL(),
			Auth: &githttp.BasicAuth{Username: "berth", Password: "wrong"},
		})
		if err == nil {
			t.Fatal("clone with a wrong password succeeded")
		}
	})
	t.Run("file URL", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := git.PlainClone(dir, false, &git.CloneOptions{URL: repo.FileURL()}); err != nil {
			t.Fatalf("clone: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "envs/prod/compose.yaml")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("commit a directory tree", func(t *testing.T) {
		src := t.TempDir()
		os.MkdirAll(filepath.Join(src, "envs/ci"), 0o755)
		os.WriteFile(filepath.Join(src, "envs/ci/compose.yaml"), []byte("services: {}\n"), 0o644)
		repo.CommitDir(t, "replace tree", src)
		files := repo.Git(t, "ls-files")
		if files != "envs/ci/compose.yaml\n" {
			t.Fatalf("tree after CommitDir: %q", files)
		}
	})
}

func TestNginx_ProxiesAndReloads(t *testing.T) {
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, upstreamFile := testenv.StartProxy(t, "app", a)
	if got := testenv.Get(t, n.URL()); got != "a" {
		t.Fatalf("through nginx: %q, want a", got)
	}
	if err := os.WriteFile(upstreamFile, []byte("upstream app { server "+b+"; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", append(n.Args(), "-t", "-q")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	n.Reload(t)
	deadline := time.Now().Add(10 * time.Second)
	for testenv.Get(t, n.URL()) != "b" {
		if time.Now().After(deadline) {
			t.Fatal("nginx still proxies to a after reload")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
