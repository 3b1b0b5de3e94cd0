package secrets

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// redisAuth says whether user/pass log in to Redis (RESP AUTH).
func redisAuth(t *testing.T, r *testenv.Redis, user, pass string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", r.Host, r.Port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "*3\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(user), user, len(pass), pass)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	return strings.HasPrefix(string(buf[:n]), "+OK")
}

// Dynamic secrets: Vault's database engine issues Redis credentials with a
// 4 s lease (max 12 s). The username and password come from one lease, a
// second resolution hands out the same credentials (no redeploy), renewal
// keeps them alive past their first TTL, and when the max TTL nears new
// credentials are read (a new digest: the services roll over).
func TestVault_DynamicSecretsAreLeasedRenewedAndReplacedBeforeMaxTTL(t *testing.T) {
	s := seed(t)
	r := testenv.StartRedis(t)
	ctx := t.Context()
	c := s.root
	if err := c.Sys().MountWithContext(ctx, "database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]map[string]any{
		"database/config/cache": {"plugin_name": "redis-database-plugin", "host": r.Host, "port": r.Port,
			"username": "default", "password": r.Password, "allowed_roles": "journal"},
	} {
		if _, err := c.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if _, err := c.Logical().WriteWithContext(ctx, "database/roles/journal", map[string]any{"db_name": "cache",
		"creation_statements": `["+@read", "~*"]`, "default_ttl": "4s", "max_ttl": "12s"}); err != nil {
		t.Fatal(err)
	}
	c.Sys().PutPolicyWithContext(ctx, "dyn", `path "database/creds/journal" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }`)
	v, err := New(Config{Address: s.v.Addr, TokenFile: s.tokenFile(t, "dyn"), AllowedPaths: []string{"database/creds/journal"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dyn := map[string]envs.SecretRef{
		"CACHE_USER": {Path: "database/creds/journal", Field: "username"},
		"CACHE_PASS": {Path: "database/creds/journal", Field: "password"},
	}
	creds := func(env []string) (user, pass string) {
		for _, kv := range env {
			k, val, _ := strings.Cut(kv, "=")
			if k == "CACHE_USER" {
				user = val
			} else {
				pass = val
			}
		}
		return
	}
	env1, d1, err := v.Resolve(ctx, "worker", dyn)
	if err != nil {
		t.Fatal(err)
	}
	u1, p1 := creds(env1)
	if !redisAuth(t, r, u1, p1) {
		t.Fatalf("issued credentials do not log in to Redis (user %s)", u1)
	}
	if _, d, _ := v.Resolve(ctx, "worker", dyn); d != d1 {
		t.Fatal("a second resolution issued new credentials: every check would redeploy")
	}
	if v.NeedsRefresh("worker", dyn) {
		t.Fatal("a fresh lease needs a refresh")
	}

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go v.RenewLeases(rctx)
	time.Sleep(6 * time.Second) // past the first 4 s TTL
	if !redisAuth(t, r, u1, p1) {
		t.Fatal("the lease was not renewed: the credentials were revoked after their first TTL")
	}
	deadline := time.Now().Add(15 * time.Second)
	for !v.NeedsRefresh("worker", dyn) {
		if time.Now().After(deadline) {
			t.Fatal("the max TTL nears and no refresh is asked for")
		}
		time.Sleep(200 * time.Millisecond)
	}
	env2, d2, err := v.Resolve(ctx, "worker", dyn)
	if err != nil {
		t.Fatal(err)
	}
	u2, p2 := creds(env2)
	if d2 == d1 || u2 == u1 || !redisAuth(t, r, u2, p2) {
		t.Fatalf("near max TTL: digest changed %v, user %s → %s", d2 != d1, u1, u2)
	}
	if !redisAuth(t, r, u1, p1) {
		t.Error("the old credentials were cut before their max TTL (a rollback would need them)")
	}
}

// The scope of secret references is checked again where the token is used
// (validation checks it first): a dynamic mount must be listed in
// allowed_paths, and auth/ never resolves, even for a token that may read
// it.
func TestVault_ScopeIsCheckedWhereTheTokenIsUsed(t *testing.T) {
	s := seed(t)
	ctx := t.Context()
	if err := s.root.Sys().MountWithContext(ctx, "transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	s.root.Sys().PutPolicyWithContext(ctx, "wide", `path "*" { capabilities = ["read", "update"] }`)
	tok := s.tokenFile(t, "wide")
	tests := []struct {
		name    string
		allowed []string
		ref     envs.SecretRef
		want    string
	}{
		{"the agent's own token", nil, envs.SecretRef{Path: "auth/token/lookup-self", Field: "id"}, "Vault path auth/token/lookup-self is refused: auth/ is never readable by a config repository"},
		{"the agent's own token, even when listed", []string{"auth/token"}, envs.SecretRef{Path: "auth/token/lookup-self", Field: "id"}, "Vault path auth/token/lookup-self is refused: auth/ is never readable by a config repository"},
		{"a dynamic mount not listed", nil, envs.SecretRef{Path: "transit/keys/k", Field: "x"}, "Vault path transit/keys/k is refused: transit/ is not a KV mount, and vault.allowed_paths does not list it"},
		{"a KV path outside the list", []string{"kv1/other"}, envs.SecretRef{Path: "secret/journal/db", Field: "password"}, "Vault path secret/journal/db is outside vault.allowed_paths"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(Config{Address: s.v.Addr, TokenFile: tok, AllowedPaths: tc.allowed}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = v.Resolve(ctx, "web", map[string]envs.SecretRef{"X": tc.ref})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !failure.IsVerdict(err) {
				t.Fatalf("Resolve: %v, want a verdict containing %q", err, tc.want)
			}
		})
	}
	v, _ := New(Config{Address: s.v.Addr, TokenFile: tok}, nil)
	if _, _, err := v.Resolve(ctx, "web", map[string]envs.SecretRef{"X": {Path: "secret/journal/db", Field: "password"}}); err != nil {
		t.Fatalf("a KV secret with no list: %v", err)
	}
}
