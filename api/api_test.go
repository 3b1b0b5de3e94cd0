package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/metrics"
)

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

func TestVerify_EachGitHostsSignature(t *testing.T) {
	body, secret := []byte(`{"ref":"refs/heads/main"}`), []byte("s3cret")
	good := sign("s3cret", string(body))
	tests := []struct {
		header, value string
		want          bool
	}{
		{"X-Hub-Signature-256", "sha256=" + good, true},
		{"X-Hub-Signature-256", good, false}, // the prefix is part of it
		{"X-Hub-Signature-256", "sha256=" + sign("other", string(body)), false},
		{"X-Gitea-Signature", good, true},
		{"X-Forgejo-Signature", good, true},
		{"X-Forgejo-Signature", "zz", false},
		{"X-Gitlab-Token", "s3cret", true},
		{"X-Gitlab-Token", "s3cre", false},
		{"X-Hub-Signature", "sha1=" + good, false}, // SHA-1 is not accepted
		{"", "", false},
	}
	for _, tc := range tests {
		h := http.Header{}
		if tc.header != "" {
			h.Set(tc.header, tc.value)
		}
		if got := Verify(h, body, secret); got != tc.want {
			t.Errorf("%s: %q: got %v", tc.header, tc.value, got)
		}
	}
}

func TestHook_RefusesWithoutTriggeringAndCollapsesNothingItself(t *testing.T) {
	triggers := 0
	reg := &metrics.Registry{}
	s := &Server{Metrics: reg, WebhookSecret: func() ([]byte, error) { return []byte("k"), nil }, Trigger: func() { triggers++ }}
	h := s.Handler()
	do := func(sig, body string) int {
		req := localRequest("POST", "/hooks/git", strings.NewReader(body))
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := do("", "{}"); c != 401 {
		t.Errorf("unsigned: %d", c)
	}
	if c := do("sha256="+sign("k", "{}"), "{}"); c != 202 {
		t.Errorf("signed: %d", c)
	}
	big := strings.Repeat("a", MaxHookBody+1)
	if c := do("sha256="+sign("k", big), big); c != 413 {
		t.Errorf("over 1 MiB: %d", c)
	}
	if triggers != 1 {
		t.Errorf("%d triggers", triggers)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, localRequest("GET", "/metrics", nil))
	for _, want := range []string{`berth_webhook_requests_total{result="accepted"} 1`, `berth_webhook_requests_total{result="unauthorized"} 1`, `berth_webhook_requests_total{result="too_large"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, rec.Body.String())
		}
	}
	// Without a secret the endpoint does not exist.
	rec = httptest.NewRecorder()
	(&Server{}).Handler().ServeHTTP(rec, localRequest("POST", "/hooks/git", nil))
	if rec.Code != 404 && rec.Code != 405 {
		t.Errorf("hook without secret: %d", rec.Code)
	}
}

func TestListen_LoopbackOrUnixSocketOnly(t *testing.T) {
	for _, bad := range []string{"0.0.0.0:9465", "10.1.2.3:80", ":9465", "example.org:80"} {
		if _, err := Listen(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err = Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
}

func TestListen_RemovesOnlyAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "not-a-socket")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if _, err := Listen("unix:" + file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Fatal("a regular file was removed")
	}
	link := filepath.Join(dir, "link")
	os.Symlink(file, link)
	if _, err := Listen("unix:" + link); err == nil {
		t.Fatal("Listen replaced a symlink")
	}

	sock := filepath.Join(dir, "api.sock")
	live, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix:" + sock); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("Listen over a live socket: %v", err)
	}
	// A killed agent leaves its socket behind: the next one takes it over.
	live.(*net.UnixListener).SetUnlinkOnClose(false)
	live.Close()
	l, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
}

func TestVerify_GitLabTokenOfAnyLength(t *testing.T) {
	secret := []byte("s3cret-token")
	for tok, want := range map[string]bool{"s3cret-token": true, "s3cret-toke": false, "s3cret-token-longer": false, "x": false} {
		h := http.Header{}
		h.Set("X-Gitlab-Token", tok)
		if got := Verify(h, nil, secret); got != want {
			t.Errorf("Verify(%q) = %v, want %v", tok, got, want)
		}
	}
}
