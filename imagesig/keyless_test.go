package imagesig

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// keylessBundle signs d the keyless way with a virtual Sigstore (a
// Fulcio-like CA issuing a short-lived certificate for identity and
// issuer, and a timestamp authority), and pushes the bundle as a
// referrer of d. It returns the trusted-root file to verify it with; with
// rekor the root also lists the virtual Rekor log, whose entry this
// bundle does not carry.
func keylessBundle(t *testing.T, d name.Digest, identity, issuer string, rekor bool) string {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	ent, err := vs.Attest(identity, issuer, testenv.CosignStatement(d))
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := ent.VerificationContent()
	sc, _ := ent.SignatureContent()
	ts, _ := ent.Timestamps()
	env := sc.(*bundle.Envelope).Envelope
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{
				RawBytes: vc.(*bundle.Certificate).Certificate().Raw}},
			TimestampVerificationData: &protobundle.TimestampVerificationData{
				Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: ts[0]}}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: body, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}}}},
	}
	testenv.PushBundle(t, d, pb)
	logs := map[string]*root.TransparencyLog(nil)
	if rekor {
		logs = vs.RekorLogs()
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, vs.TimestampingAuthorities(), logs)
	if err != nil {
		t.Fatal(err)
	}
	js, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(f, js, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestVerify_KeylessBundleOffline(t *testing.T) {
	reg := referrersRegistry(t)
	const issuer, subject = "https://token.example.org", "https://git.example.org/acme/web/.ci/release.yml@refs/tags/v1"
	img := pushImage(t, reg.host, "acme/web")
	trusted := keylessBundle(t, img, subject, issuer, false)
	rule := func(issuer, subject, trusted string) []Rule {
		return []Rule{{Prefix: reg.host + "/acme", Keyless: &Keyless{Issuer: issuer, Subject: subject, TrustedRoot: trusted}}}
	}
	v, _ := newVerifier(t, rule(issuer, `https://git\.example\.org/acme/[^/]+/\.ci/release\.yml@refs/tags/v.*`, trusted), "")
	if err := v.Check(context.Background(), img.String(), nil); err != nil {
		t.Fatalf("keyless bundle refused: %v", err)
	}
	other := pushImage(t, reg.host, "acme/api")
	otherRoot := keylessBundle(t, other, subject, issuer, false)
	logged := pushImage(t, reg.host, "acme/logged")
	withRekor := keylessBundle(t, logged, subject, issuer, true)
	keyed := pushImage(t, reg.host, "acme/keyed")
	testenv.NewCosignKey(t).SignTag(t, keyed, keyed)
	for _, tc := range []struct {
		name  string
		img   name.Digest
		rules []Rule
		why   string
	}{
		{"another subject", img, rule(issuer, `https://git\.example\.org/acme/other/.*`, trusted), "a bundle that does not verify"},
		// The subject matches whole: a prefix of it is not enough.
		{"a subject regexp that only matches a prefix", img, rule(issuer, `https://git\.example\.org/acme/web`, trusted), "a bundle that does not verify"},
		{"another issuer", img, rule("https://other.example.org", ".*", trusted), "a bundle that does not verify"},
		{"another trusted root", other, rule(issuer, ".*", trusted), "a bundle that does not verify"},
		{"a trusted root with a log the bundle is not in", logged, rule(issuer, ".*", withRekor), "a bundle that does not verify"},
		{"a key's signature under a keyless rule", keyed, rule(issuer, ".*", otherRoot), "keyless rules verify bundles"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := newVerifier(t, tc.rules, "")
			err := v.Check(context.Background(), tc.img.String(), nil)
			if !failure.IsVerdict(err) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("want a verdict saying %q, got %v", tc.why, err)
			}
		})
	}
}
