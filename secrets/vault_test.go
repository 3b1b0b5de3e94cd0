package secrets

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// seeded is a real Vault with a KV v2 secret at secret/journal/db (two
// versions), a KV v1 mount kv1/ holding kv1/journal/api, a "berth" policy
// reading both, and AppRole enabled with a role carrying that policy.
type seeded struct {
	v    *testenv.Vault
	root *vault.Client
}

func seed(t *testing.T) *seeded {
	t.Helper()
	v := testenv.StartVault(t)
	c := v.RootClient(t)
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Sys().MountWithContext(ctx, "kv1", &vault.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}))
	_, err := c.KVv2("secret").Put(ctx, "journal/db", map[string]any{"password": "pw-version-1"})
	must(err)
	_, err = c.KVv2("secret").Put(ctx, "journal/db", map[string]any{"password": "pw-version-2", "port": 5432})
	must(err)
	_, err = c.Logical().WriteWithContext(ctx, "kv1/journal/api", map[string]any{"key": "api-key-v1"})
	must(err)
	must(c.Sys().PutPolicyWithContext(ctx, "berth", `
path "secret/data/journal/*" { capabilities = ["read"] }
path "kv1/journal/*" { capabilities = ["read"] }
`))
	must(c.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vault.EnableAuthOptions{Type: "approle"}))
	_, err = c.Logical().WriteWithContext(ctx, "auth/approle/role/berth", map[string]any{"token_policies": "berth", "token_ttl": "20m"})
	must(err)
	return &seeded{v: v, root: c}
}

func (s *seeded) tokenFile(t *testing.T, policies ...string) string {
	t.Helper()
	tok, err := s.root.Auth().Token().CreateWithContext(t.Context(), &vault.TokenCreateRequest{Policies: policies, NoDefaultPolicy: len(policies) > 0 && policies[0] == "none"})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte(tok.Auth.ClientToken+"\n"), 0o600)
	return p
}

func (s *seeded) appRole(t *testing.T) *AppRole {
	t.Helper()
	ctx := t.Context()
	r, err := s.root.Logical().ReadWithContext(ctx, "auth/approle/role/berth/role-id")
	if err != nil {
		t.Fatal(err)
	}
	sid, err := s.root.Logical().WriteWithContext(ctx, "auth/approle/role/berth/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := &AppRole{RoleIDFile: filepath.Join(dir, "role_id"), SecretIDFile: filepath.Join(dir, "secret_id")}
	os.WriteFile(a.RoleIDFile, []byte(r.Data["role_id"].(string)), 0o600)
	os.WriteFile(a.SecretIDFile, []byte(sid.Data["secret_id"].(string)), 0o600)
	return a
}

var refs = map[string]envs.SecretRef{
	"DB_PASSWORD": {Path: "secret/journal/db", Field: "password"},
	"DB_PORT":     {Path: "secret/journal/db", Field: "port"},
	"OLD_DB_PW":   {Path: "secret/journal/db", Field: "password", Version: 1},
	"API_KEY":     {Path: "kv1/journal/api", Field: "key"},
}

func TestVault_ResolvesKVv2AndKVv1WithTokenFileAndAppRole(t *testing.T) {
	s := seed(t)
	want := "API_KEY=api-key-v1,DB_PASSWORD=pw-version-2,DB_PORT=5432,OLD_DB_PW=pw-version-1"
	for name, cfg := range map[string]Config{
		"token file": {Address: s.v.Addr, TokenFile: s.tokenFile(t, "berth")},
		"approle":    {Address: s.v.Addr, AppRole: s.appRole(t)},
	} {
		t.Run(name, func(t *testing.T) {
			v, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			env, digest, err := v.Resolve(t.Context(), "web", refs)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(env, ","); got != want {
				t.Fatalf("env %s, want %s", got, want)
			}
			if strings.Contains(digest, "pw-version") || len(digest) != 64 {
				t.Fatalf("digest %q", digest)
			}
		})
	}
}

func TestVault_NewVersionChangesTheDigest(t *testing.T) {
	s := seed(t)
	v, _ := New(Config{Address: s.v.Addr, TokenFile: s.tokenFile(t, "berth")}, nil)
	one := map[string]envs.SecretRef{"DB_PASSWORD": refs["DB_PASSWORD"]}
	_, d1, err := v.Resolve(t.Context(), "web", one)
	if err != nil {
		t.Fatal(err)
	}
	_, d1again, _ := v.Resolve(t.Context(), "web", one)
	s.root.KVv2("secret").Put(t.Context(), "journal/db", map[string]any{"password": "pw-version-3"})
	_, d2, _ := v.Resolve(t.Context(), "web", one)
	if d1 != d1again || d1 == d2 {
		t.Fatalf("digests %s %s %s: want stable, then changed by the new version", d1, d1again, d2)
	}
}

func TestVault_FailuresNameTheVariableAndPathNeverAValue(t *testing.T) {
	s := seed(t)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + closed.Addr().String()
	closed.Close()
	// The class: what the revision names and does not exist is a verdict
	// (as an unknown digest); Vault refusing the host or not answering is
	// an outage.
	tests := []struct {
		name  string
		cfg   Config
		ref   envs.SecretRef
		want  string
		class failure.Class
	}{
		{"missing path", Config{Address: s.v.Addr, TokenFile: s.tokenFile(t, "berth")}, envs.SecretRef{Path: "secret/journal/nope", Field: "password"}, "secret DB_PASSWORD (secret/journal/nope#password): no such secret", failure.Verdict},
		{"missing field", Config{Address: s.v.Addr, TokenFile: s.tokenFile(t, "berth")}, envs.SecretRef{Path: "secret/journal/db", Field: "passwd"}, `secret DB_PASSWORD (secret/journal/db#passwd): no field "passwd" in the secret`, failure.Verdict},
		{"permission denied", Config{Address: s.v.Addr, TokenFile: s.tokenFile(t, "default")}, envs.SecretRef{Path: "secret/journal/db", Field: "password"}, "secret DB_PASSWORD (secret/journal/db#password): permission denied", failure.Outage},
		{"vault down", Config{Address: down, TokenFile: s.tokenFile(t, "berth"), Timeout: 5 * time.Second}, envs.SecretRef{Path: "secret/journal/db", Field: "password"}, "secret DB_PASSWORD (secret/journal/db#password): vault unreachable", failure.Outage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = v.Resolve(context.Background(), "web", map[string]envs.SecretRef{"DB_PASSWORD": tc.ref})
			if err == nil || !strings.Contains(err.Error(), tc.want) || failure.Of(err) != tc.class {
				t.Fatalf("error %v (%s), want %q (%s)", err, failure.Of(err), tc.want, tc.class)
			}
			if strings.Contains(err.Error(), "pw-version") {
				t.Fatalf("error reveals a value: %v", err)
			}
		})
	}
}

// An AppRole token is renewed once past half its TTL, and a token that can
// no longer be renewed (revoked, past max TTL) is replaced by a new login.
// The clock is the token's: renewAt is moved instead of sleeping.
func TestVault_AppRoleTokenRenewedThenReacquired(t *testing.T) {
	s := seed(t)
	v, err := New(Config{Address: s.v.Addr, AppRole: s.appRole(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	one := map[string]envs.SecretRef{"DB_PASSWORD": refs["DB_PASSWORD"]}
	if _, _, err := v.Resolve(t.Context(), "web", one); err != nil {
		t.Fatal(err)
	}
	first := v.client.Token()

	v.mu.Lock()
	v.renewAt = time.Now().Add(-time.Second)
	v.mu.Unlock()
	if _, _, err := v.Resolve(t.Context(), "web", one); err != nil {
		t.Fatal(err)
	}
	if v.client.Token() != first || time.Until(v.renewAt) < 5*time.Minute {
		t.Fatalf("past half TTL the token was not renewed in place (token changed: %v, renew in %s)", v.client.Token() != first, time.Until(v.renewAt))
	}

	if err := s.root.Auth().Token().RevokeTreeWithContext(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	v.renewAt = time.Now().Add(-time.Second)
	v.mu.Unlock()
	if _, _, err := v.Resolve(t.Context(), "web", one); err != nil {
		t.Fatalf("after the token was revoked: %v", err)
	}
	if v.client.Token() == first {
		t.Fatal("a revoked token was kept instead of logging in again")
	}
}

// AWS itself cannot be reached here: STS is played by a local server that
// answers GetCallerIdentity as STS does, and Vault's real aws auth method
// is pointed at it (sts_endpoint). Everything else is real: the agent's
// SigV4-signed request, Vault's parsing and forwarding of it, the role's
// principal binding, the token and its policy.
func TestVault_AWSIAMLoginAsTheEC2Host(t *testing.T) {
	s := seed(t)
	var seen []string
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen = append(seen, r.Method+" "+string(body)+" "+r.Header.Get("Authorization")+" server-id="+r.Header.Get("X-Vault-AWS-IAM-Server-ID"))
		arn := "arn:aws:sts::123456789012:assumed-role/berth-host/i-0abc"
		if strings.Contains(r.Header.Get("Authorization"), "Credential=AKIAOTHER/") {
			arn = "arn:aws:sts::123456789012:assumed-role/someone-else/i-0def"
		}
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult><Arn>%s</Arn><UserId>AROAEXAMPLE:i-0abc</UserId><Account>123456789012</Account></GetCallerIdentityResult>
  <ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>`, arn)
	}))
	defer sts.Close()
	ctx := t.Context()
	c := s.root
	if err := c.Sys().EnableAuthWithOptionsWithContext(ctx, "aws", &vault.EnableAuthOptions{Type: "aws"}); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string]map[string]any{
		"auth/aws/config/client": {"sts_endpoint": sts.URL, "sts_region": "us-east-1", "iam_server_id_header_value": "vault.test"},
		"auth/aws/role/berth": {"auth_type": "iam", "bound_iam_principal_arn": "arn:aws:iam::123456789012:role/berth-host",
			"resolve_aws_unique_ids": false, "token_policies": "berth", "token_ttl": "20m"},
	} {
		if _, err := c.Logical().WriteWithContext(ctx, path, data); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
	v, err := New(Config{Address: s.v.Addr, AWS: &AWSIAM{Role: "berth", ServerIDHeader: "vault.test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env, _, err := v.Resolve(ctx, "web", map[string]envs.SecretRef{"DB_PASSWORD": refs["DB_PASSWORD"]})
	if err != nil || strings.Join(env, ",") != "DB_PASSWORD=pw-version-2" {
		t.Fatalf("aws login then read: %v %v (STS saw %q)", env, err, seen)
	}
	if len(seen) == 0 || !strings.Contains(seen[0], "POST Action=GetCallerIdentity&Version=2011-06-15 AWS4-HMAC-SHA256 Credential=AKIATEST/") ||
		!strings.Contains(seen[0], "server-id=vault.test") {
		t.Errorf("STS saw %q", seen)
	}

	// Another principal is refused, and the error says which login failed.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAOTHER")
	v, _ = New(Config{Address: s.v.Addr, AWS: &AWSIAM{Role: "berth", ServerIDHeader: "vault.test"}}, nil)
	if _, _, err := v.Resolve(ctx, "web", map[string]envs.SecretRef{"DB_PASSWORD": refs["DB_PASSWORD"]}); err == nil || !strings.Contains(err.Error(), "aws login") {
		t.Errorf("a host with another role logged in: %v", err)
	}
}
