package envs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestLoad_TheRepositoryAddsSignatureRules(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(priv.Public())
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	compose := func(images string) string {
		return "services:\n  web:\n    image: reg.example/shop@sha256:" + strings.Repeat("a", 64) + "\nx-berth:\n  images: " + images + "\n"
	}
	env, ps := load(t, map[string]string{
		"envs/prod/compose.yaml":     compose(`{verify: [{prefix: reg.example/shop, key: keys/release.pub}]}`),
		"envs/prod/keys/release.pub": pub,
	}, Options{})
	if len(ps) > 0 || env.Images.Empty() {
		t.Fatalf("a rule with a key of the repository: %v", ps)
	}
	for _, tc := range []struct{ name, images, want string }{
		{"a host path", `{verify: [{prefix: "*", key: /etc/berth/cosign.pub}]}`, "x-berth.images.verify[0].key: read /etc/berth/cosign.pub: must be a file of the repository"},
		{"a key outside the checkout", `{verify: [{prefix: "*", key: ../../../etc/passwd}]}`, "x-berth.images.verify[0].key: read ../../../etc/passwd"},
		{"an unknown key", `{verify: [{prefix: "*", key: keys/release.pub, mod: warn}]}`, `x-berth.images.verify[0].mod: unknown key "mod"`},
		{"no signer", `{verify: [{prefix: "*"}]}`, "x-berth.images.verify[0].key: a rule names a cosign public key file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := load(t, map[string]string{"envs/prod/compose.yaml": compose(tc.images), "envs/prod/keys/release.pub": pub}, Options{})
			if !strings.Contains(ps.Error(), tc.want) {
				t.Fatalf("want %q in:\n%v", tc.want, ps)
			}
		})
	}
}
