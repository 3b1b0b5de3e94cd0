package envs

import (
	"os"
	"strings"
	"testing"
)

// ../sopsfile/testdata/shop.env: DB_PASSWORD, API_TOKEN, EMPTY and MULTI
// encrypted by sops 3.13.3, NOTE_unencrypted in the clear.
func sealedEnvFile(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../sopsfile/testdata/shop.env")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoad_SOPSReferencesAndAnEncryptedDotEnv(t *testing.T) {
	sealed := sealedEnvFile(t)
	compose := func(extra string) string {
		return `services:
  web:
    image: reg.example/shop@sha256:` + strings.Repeat("a", 64) + `
    environment: {NOTE: "${NOTE_unencrypted}"` + extra + `}
    x-berth:
      secrets: {DB_PASSWORD: "sops:.env#DB_PASSWORD"}
      secret_files: {token: "sops:secrets/app.env#API_TOKEN"}
`
	}
	files := map[string]string{
		"envs/prod/compose.yaml":    compose(""),
		"envs/prod/.env":            sealed,
		"envs/prod/secrets/app.env": sealed,
	}
	env, ps := load(t, files, Options{})
	if len(ps) > 0 {
		t.Fatalf("problems: %v", ps)
	}
	web := env.Service("web")
	if got := *web.Config.Environment["NOTE"]; got != "plain" {
		t.Errorf("a value the .env holds in the clear interpolates: got %q", got)
	}
	for _, ref := range []SecretRef{web.Berth.Secrets["DB_PASSWORD"], web.Berth.SecretFiles["token"]} {
		if ref.Sealed == nil {
			t.Errorf("%s: the SOPS file was not attached", ref)
		}
	}
	if _, ok := env.Project.Environment["DB_PASSWORD"]; ok {
		t.Error("an encrypted value is among the interpolation variables")
	}

	for _, tc := range []struct {
		name  string
		files map[string]string
		opts  Options
		want  string
	}{
		{"an encrypted value interpolated", map[string]string{"envs/prod/compose.yaml": compose(`, PW: "${DB_PASSWORD}"`), "envs/prod/.env": sealed, "envs/prod/secrets/app.env": sealed},
			Options{}, "${DB_PASSWORD} names a value this .env holds encrypted"},
		{"a key the file lacks", map[string]string{"envs/prod/compose.yaml": strings.Replace(compose(""), "#DB_PASSWORD", "#NOPE", 1), "envs/prod/.env": sealed, "envs/prod/secrets/app.env": sealed},
			Options{}, ".env holds no key NOPE"},
		{"a key in the clear", map[string]string{"envs/prod/compose.yaml": strings.Replace(compose(""), "#DB_PASSWORD", "#NOTE_unencrypted", 1), "envs/prod/.env": sealed, "envs/prod/secrets/app.env": sealed},
			Options{}, ".env holds NOTE_unencrypted unencrypted"},
		{"a file that is not SOPS's", map[string]string{"envs/prod/compose.yaml": compose(""), "envs/prod/.env": sealed, "envs/prod/secrets/app.env": "API_TOKEN=plain\n"},
			Options{}, "secrets/app.env: not encrypted with SOPS"},
		{"a file outside the checkout", map[string]string{"envs/prod/compose.yaml": strings.Replace(compose(""), "sops:secrets/app.env", "sops:../../../etc/app.env", 1), "envs/prod/.env": sealed},
			Options{}, "malformed file"},
		{"a host without an age key", files, Options{NoSOPSKey: true}, "declares SOPS-encrypted secrets but the agent has no age key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, tc.files, tc.opts)
			if !strings.Contains(ps.Error(), tc.want) {
				t.Fatalf("want %q in:\n%v", tc.want, ps)
			}
			if strings.Contains(ps.Error(), "s3cr3t") {
				t.Errorf("a problem shows a value: %v", ps)
			}
		})
	}
}
