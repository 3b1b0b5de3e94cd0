package imagesig

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"berth.dev/berth/internal/testenv"
)

// cosign runs the real cosign CLI (v2.6.5) offline: its own key pair, no
// transparency log, plain HTTP to the loopback registries.
type cosign struct {
	bin, dir string
}

func (c cosign) run(t *testing.T, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append([]string{"HOME=" + c.dir, "PATH=" + os.Getenv("PATH"), "COSIGN_PASSWORD=", "COSIGN_YES=true"}, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign %v: %v\n%s", args, err, out)
	}
}

// TestVerify_CosignCLISignaturesAndTheTestSigner checks berth against
// what the real cosign writes — the .sig tag, an OCI 1.1 referrer, a
// Sigstore bundle — and that cosign verify accepts what testenv's signer
// writes, so the other tests sign the way cosign does.
func TestVerify_CosignCLISignaturesAndTheTestSigner(t *testing.T) {
	c := cosign{bin: testenv.Cosign(t), dir: t.TempDir()}
	c.run(t, nil, "generate-key-pair")
	pub := filepath.Join(c.dir, "cosign.pub")
	offline := []string{"--key", filepath.Join(c.dir, "cosign.key"), "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry"}
	tags, refs := tagRegistry(t), referrersRegistry(t)
	for _, tc := range []struct {
		name string
		reg  testRegistry
		env  []string
		args []string
	}{
		{"the .sig tag", tags, nil, nil},
		{"an OCI 1.1 referrer", refs, []string{"COSIGN_EXPERIMENTAL=1"}, []string{"--registry-referrers-mode=oci-1-1"}},
		{"a Sigstore bundle", refs, nil, []string{"--new-bundle-format"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := pushImage(t, tc.reg.host, "cosigned")
			c.run(t, tc.env, append(append([]string{"sign"}, offline...), append(tc.args, img.String())...)...)
			v, _ := newVerifier(t, []Rule{{Prefix: "*", Key: pub}}, "")
			if err := v.Check(context.Background(), img.String(), nil); err != nil {
				t.Fatalf("cosign's signature refused: %v", err)
			}
			other := testenv.NewCosignKey(t)
			v, _ = newVerifier(t, []Rule{{Prefix: "*", Key: other.PubFile}}, "")
			if err := v.Check(context.Background(), img.String(), nil); err == nil {
				t.Fatal("cosign's signature accepted for another key")
			}
		})
	}
	t.Run("cosign verify accepts the test signer's signatures", func(t *testing.T) {
		k := testenv.NewCosignKey(t)
		img := pushImage(t, tags.host, "testsigned")
		k.SignTag(t, img, img)
		c.run(t, nil, "verify", "--key", k.PubFile, "--insecure-ignore-tlog=true", "--allow-insecure-registry", "--allow-http-registry", img.String())
	})
}
