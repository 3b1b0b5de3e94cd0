package imagesig

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
	"google.golang.org/protobuf/encoding/protojson"
)

// The signatures these helpers write are what cosign v2.6.5 writes
// (pkg/oci/empty, pkg/oci/static, pkg/oci/remote/write.go, and
// cmd/cosign/cli/sign/sign.go's signDigestBundle); TestCosignCLI checks
// the real cosign against the same verifier when it is built.

// testKey is a cosign key pair: the signer, and the public key file.
type testKey struct {
	signer  signature.SignerVerifier
	pubFile string
}

func newKey(t *testing.T) testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(f, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return testKey{signer: sv, pubFile: f}
}

// pushImage pushes a small random image to host/repo and returns its
// pinned reference.
func pushImage(t *testing.T, host, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/" + repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithContext(context.Background())); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	d, _ := img.Digest()
	return tag.Context().Digest(d.String())
}

// simpleSignature is cosign's signature image: one simple-signing layer,
// the signature in its annotation. signed is the digest the payload names.
func simpleSignature(t *testing.T, k testKey, signed name.Digest) v1.Image {
	t.Helper()
	p, err := payload.Cosign{Image: signed}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.signer.SignMessage(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(p, simpleSigningType),
		Annotations: map[string]string{signatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// signTag writes a signature of signed under d's sha256-<hex>.sig tag
// (cosign sign's default).
func signTag(t *testing.T, k testKey, d, signed name.Digest) {
	t.Helper()
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	if err := remote.Write(tag, simpleSignature(t, k, signed)); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
}

// signReferrer writes the same signature as a referrer of d (cosign sign
// --registry-referrers-mode=oci-1-1).
func signReferrer(t *testing.T, k testKey, d name.Digest) {
	t.Helper()
	img := mutate.ConfigMediaType(simpleSignature(t, k, d), cosignSigArtifact)
	pushReferrer(t, d, img)
}

// signBundle writes a Sigstore bundle signing d with the key pair as a
// referrer (cosign sign --new-bundle-format --key … --tlog-upload=false).
func signBundle(t *testing.T, kp sign.Keypair, d name.Digest) {
	t.Helper()
	b, err := sign.Bundle(&sign.DSSEData{Data: statement(d), PayloadType: "application/vnd.in-toto+json"}, kp, sign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pushBundle(t, d, b)
}

// statement is the in-toto statement cosign signs in a bundle.
func statement(d name.Digest) []byte {
	hex := strings.TrimPrefix(d.DigestStr(), "sha256:")
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + hex + `"}}],"predicateType":"` + cosignSignPredicate + `"}`)
}

func pushBundle(t *testing.T, d name.Digest, b *protobundle.Bundle) {
	t.Helper()
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), emptyConfig)
	img, err := mutate.Append(base, mutate.Addendum{Layer: static.NewLayer(js, "application/vnd.dev.sigstore.bundle.v0.3+json")})
	if err != nil {
		t.Fatal(err)
	}
	pushReferrer(t, d, img)
}

// pushReferrer pushes img with d as its subject: a registry with the
// referrers API lists it there, others under the referrers tag schema
// (go-containerregistry keeps that index when the registry does not
// answer OCI-Subject).
func pushReferrer(t *testing.T, d name.Digest, img v1.Image) {
	t.Helper()
	desc, err := remote.Head(d)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Subject(img, *desc).(v1.Image)
	dg, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(d.Context().Digest(dg.String()), img); err != nil {
		t.Fatalf("push referrer of %s: %v", d, err)
	}
}
