package gitsource

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

func newSource(t *testing.T, cfg Config) *Source {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := New(cfg, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokenFile(t *testing.T, token string) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSource_PollsAndFetchesOverSmartHTTPWithAuth(t *testing.T) {
	g := testenv.StartGitServer(t, testenv.WithBasicAuth("berth", "tok-123"))
	repo := g.NewRepo(t, "config")
	c1 := repo.CommitFiles(t, "first", map[string]string{"envs/prod/compose.yaml": "services: {}\n", "bin/run.sh": "#!/bin/sh\n"})
	repo.Git(t, "update-index", "--chmod=+x", "bin/run.sh")

	s := newSource(t, Config{URL: repo.HTTPURL(), Branch: "main", Auth: Auth{Username: "berth", TokenFile: tokenFile(t, "tok-123")}})
	head, err := s.Head(t.Context())
	if err != nil || head != c1 {
		t.Fatalf("Head = %s, %v; want %s", head, err, c1)
	}
	rev, err := s.Fetch(t.Context(), head, "")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rev.Dir, "envs/prod/compose.yaml")); err != nil || string(b) != "services: {}\n" {
		t.Fatalf("working copy: %q, %v", b, err)
	}
	if rev.Subject != "first" || !strings.Contains(rev.Author, "berth test") {
		t.Errorf("revision %+v", rev)
	}

	c2 := repo.CommitFiles(t, "second", map[string]string{"envs/prod/.env": "A=1\n"})
	head, err = s.Head(t.Context())
	if err != nil || head != c2 {
		t.Fatalf("Head after a push = %s, %v; want %s", head, err, c2)
	}
	rev2, err := s.Fetch(t.Context(), head, c1)
	if err != nil {
		t.Fatalf("fast-forward fetch: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rev2.Dir, "envs/prod/.env")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rev.Dir, "envs/prod/compose.yaml")); err != nil {
		t.Fatalf("the previous working copy went away: %v", err)
	}
	if err := s.Prune(c2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rev.Dir); !os.IsNotExist(err) {
		t.Fatalf("pruned working copy still there: %v", err)
	}
}

func TestSource_RefusesAForcePushUnlessAllowed(t *testing.T) {
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	repo.CommitFiles(t, "base", map[string]string{"a": "1\n"})
	deployed := repo.CommitFiles(t, "deployed", map[string]string{"a": "2\n"})

	s := newSource(t, Config{URL: repo.FileURL()})
	if _, err := s.Fetch(t.Context(), deployed, ""); err != nil {
		t.Fatal(err)
	}
	repo.Git(t, "reset", "-q", "--hard", "HEAD~1")
	repo.Git(t, "commit", "-q", "--allow-empty", "-m", "rewritten")
	repo.Git(t, "push", "-q", "--force", "origin", "HEAD:refs/heads/main")
	rewritten := repo.Head(t)

	_, err := s.Fetch(t.Context(), rewritten, deployed)
	if !errors.Is(err, ErrRewrite) || !failure.IsVerdict(err) {
		t.Fatalf("fetch of a force-pushed head: %v, want ErrRewrite, a verdict", err)
	}
	if !strings.Contains(err.Error(), "does not descend from the deployed commit "+deployed[:12]) {
		t.Errorf("message: %v", err)
	}

	allow := newSource(t, Config{URL: repo.FileURL(), AllowRewrites: true})
	if _, err := allow.Fetch(t.Context(), rewritten, deployed); err != nil {
		t.Fatalf("with rewrites allowed: %v", err)
	}
}

func TestSource_ErrorsNameTheURLWithoutCredentials(t *testing.T) {
	g := testenv.StartGitServer(t, testenv.WithBasicAuth("berth", "right"))
	repo := g.NewRepo(t, "config")
	repo.CommitFiles(t, "first", map[string]string{"a": "1\n"})

	withCreds := strings.Replace(repo.HTTPURL(), "http://", "http://berth:wrong-secret@", 1)
	s := newSource(t, Config{URL: withCreds})
	_, err := s.Head(t.Context())
	if err == nil {
		t.Fatal("Head with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "wrong-secret") || !strings.Contains(err.Error(), repo.HTTPURL()) {
		t.Fatalf("error %q must name %s without the password", err, repo.HTTPURL())
	}
	if got := s.URL(); got != repo.HTTPURL() {
		t.Errorf("URL() = %q", got)
	}
}

func TestSource_UnreachableServerFailsFast(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/config.git"
	srv.Close()
	s := newSource(t, Config{URL: url, Timeout: 5 * time.Second})
	start := time.Now()
	_, err := s.Head(t.Context())
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("Head of a closed server: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestSource_RetryAfterFromAThrottlingServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	t.Cleanup(srv.Close)
	s := newSource(t, Config{URL: srv.URL + "/config.git"})
	_, err := s.Head(t.Context())
	var ra *RetryAfterError
	if !errors.As(err, &ra) || ra.After != 7*time.Second {
		t.Fatalf("Head against a 429: %v, want RetryAfterError of 7s", err)
	}
}

func TestSource_InterruptedCheckoutIsRedone(t *testing.T) {
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	c1 := repo.CommitFiles(t, "first", map[string]string{"envs/prod/compose.yaml": "services: {}\n"})
	dir := t.TempDir()
	s := newSource(t, Config{URL: repo.FileURL(), Dir: dir})
	// What a kill during writeTree leaves behind.
	half := filepath.Join(dir, "checkouts", ".tmp-"+c1)
	os.MkdirAll(half, 0o700)
	os.WriteFile(filepath.Join(half, "partial"), []byte("x"), 0o600)

	rev, err := s.Fetch(t.Context(), c1, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rev.Dir, "partial")); !os.IsNotExist(err) {
		t.Fatal("the interrupted checkout's leftovers made it into the working copy")
	}
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Fatal("temp dir left behind")
	}
}

// signingKey returns a new OpenPGP key and its armored public keyring.
func signingKey(t *testing.T, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@berth.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, buf.String()
}

func TestSource_CommitSignatures(t *testing.T) {
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	unsigned := repo.CommitFiles(t, "unsigned", map[string]string{"a": "1\n"})
	trusted, keyring := signingKey(t, "release")
	stranger, _ := signingKey(t, "stranger")

	signedBy := func(key *openpgp.Entity, msg string) string {
		t.Helper()
		// The test repo's work tree, committed with go-git's signer, then
		// pushed like any commit.
		r, err := git.PlainOpen(repo.WorkDir())
		if err != nil {
			t.Fatal(err)
		}
		wt, _ := r.Worktree()
		os.WriteFile(filepath.Join(repo.WorkDir(), "a"), []byte(msg), 0o644)
		wt.Add("a")
		h, err := wt.Commit(msg, &git.CommitOptions{SignKey: key, Author: testSignature()})
		if err != nil {
			t.Fatal(err)
		}
		repo.Git(t, "push", "-q", "origin", "HEAD:refs/heads/main")
		return h.String()
	}

	s := newSource(t, Config{URL: repo.FileURL(), TrustedKeys: keyring})
	if _, err := s.Fetch(t.Context(), unsigned, ""); !errors.Is(err, ErrSignature) || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "is not signed") {
		t.Fatalf("unsigned head: %v, want a refusal", err)
	}
	good := signedBy(trusted, "signed by release\n")
	rev, err := s.Fetch(t.Context(), good, "")
	if err != nil || rev.Signer != trusted.PrimaryKey.KeyIdString() {
		t.Fatalf("head signed by a trusted key: %+v, %v", rev, err)
	}
	bad := signedBy(stranger, "signed by a stranger\n")
	if _, err := s.Fetch(t.Context(), bad, ""); !errors.Is(err, ErrSignature) || !failure.IsVerdict(err) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("head signed by an unknown key: %v, want a refusal", err)
	}
}

func testSignature() *object.Signature {
	return &object.Signature{Name: "berth test", Email: "test@berth.invalid", When: time.Now()}
}

func TestSource_SSHChecksTheHostKey(t *testing.T) {
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	c1 := repo.CommitFiles(t, "first", map[string]string{"envs/prod/compose.yaml": "services: {}\n"})
	sshd := g.StartSSH(t)

	tests := []struct {
		name       string
		knownHosts string
		wantErr    string
	}{
		{"known host key", sshd.KnownHosts(t, sshd.HostKey), ""},
		{"changed host key", sshd.KnownHosts(t, testenv.NewHostKey(t)), "key mismatch"},
		{"unknown host", sshd.KnownHosts(t, nil), "key is unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, Config{URL: sshd.URL(repo), Auth: Auth{SSHKeyFile: sshd.ClientKeyFile, KnownHostsFile: tc.knownHosts}})
			head, err := s.Head(t.Context())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Head: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || head != c1 {
				t.Fatalf("Head = %s, %v", head, err)
			}
			if _, err := s.Fetch(t.Context(), head, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := New(Config{URL: sshd.URL(repo), Dir: t.TempDir(), Auth: Auth{SSHKeyFile: sshd.ClientKeyFile}}, nil); err == nil ||
		!strings.Contains(err.Error(), "known_hosts_file") {
		t.Fatalf("ssh without known_hosts: %v, want a refusal", err)
	}
}
