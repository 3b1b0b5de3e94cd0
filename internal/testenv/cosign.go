package testenv

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
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

// Image signatures written the way cosign v2.6.5 writes them
// (pkg/oci/empty, pkg/oci/static, pkg/oci/remote/write.go and
// cmd/cosign/cli/sign/sign.go's signDigestBundle), with sigstore's own
// signing code: imagesig's TestVerify_CosignCLI checks the real cosign
// against the same verifier.
const (
	cosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	cosignSignature     = "dev.cosignproject.cosign/signature"
	cosignSigArtifact   = "application/vnd.dev.cosign.artifact.sig.v1+json"
	sigstoreBundle      = "application/vnd.dev.sigstore.bundle.v0.3+json"
	emptyConfig         = "application/vnd.oci.empty.v1+json"
	// CosignSignPredicate is the in-toto predicate of an image signature
	// in a bundle.
	CosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"
)

// CosignKey is a cosign key pair: the signer and its public key file.
type CosignKey struct {
	Signer  signature.SignerVerifier
	PubFile string
}

// NewCosignKey makes an ECDSA P-256 key pair, as cosign generate-key-pair
// does, and writes its public key (PEM) to a file.
func NewCosignKey(t testing.TB) CosignKey {
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
	return CosignKey{Signer: sv, PubFile: f}
}

// signatureImage is cosign's signature image: one simple-signing layer
// naming signed, the signature in its annotation.
func signatureImage(sv signature.Signer, signed name.Digest) (v1.Image, error) {
	p, err := payload.Cosign{Image: signed}.MarshalJSON()
	if err != nil {
		return nil, err
	}
	sig, err := sv.SignMessage(bytes.NewReader(p))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	return mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(p, cosignSimpleSigning),
		Annotations: map[string]string{cosignSignature: base64.StdEncoding.EncodeToString(sig)},
	})
}

// CosignSignTag writes sv's signature of signed under d's
// sha256-<hex>.sig tag, as cosign sign does by default (the demo's
// signer uses it too).
func CosignSignTag(sv signature.Signer, d, signed name.Digest) error {
	img, err := signatureImage(sv, signed)
	if err != nil {
		return err
	}
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	if err := remote.Write(tag, img); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	return nil
}

func (k CosignKey) signatureImage(t testing.TB, signed name.Digest) v1.Image {
	t.Helper()
	img, err := signatureImage(k.Signer, signed)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// SignTag writes a signature of signed under d's sha256-<hex>.sig tag
// (cosign sign's default). signed is d, unless a test forges a signature
// of another image.
func (k CosignKey) SignTag(t testing.TB, d, signed name.Digest) {
	t.Helper()
	if err := CosignSignTag(k.Signer, d, signed); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// SignReferrer writes the same signature as a referrer of d (cosign sign
// --registry-referrers-mode=oci-1-1).
func (k CosignKey) SignReferrer(t testing.TB, d name.Digest) {
	t.Helper()
	pushReferrer(t, d, mutate.ConfigMediaType(k.signatureImage(t, d), cosignSigArtifact))
}

// SignBundle writes a Sigstore bundle signing d with kp as a referrer
// (cosign sign --new-bundle-format --key … --tlog-upload=false).
func SignBundle(t testing.TB, kp sign.Keypair, d name.Digest) {
	t.Helper()
	b, err := sign.Bundle(&sign.DSSEData{Data: CosignStatement(d), PayloadType: "application/vnd.in-toto+json"}, kp, sign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	PushBundle(t, d, b)
}

// CosignStatement is the in-toto statement cosign signs in a bundle.
func CosignStatement(d name.Digest) []byte {
	hex := strings.TrimPrefix(d.DigestStr(), "sha256:")
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + hex + `"}}],"predicateType":"` + CosignSignPredicate + `"}`)
}

// PushBundle pushes a Sigstore bundle as a referrer of d, as cosign's
// WriteAttestationNewBundleFormat does.
func PushBundle(t testing.TB, d name.Digest, b *protobundle.Bundle) {
	t.Helper()
	js, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), emptyConfig)
	img, err := mutate.Append(base, mutate.Addendum{Layer: static.NewLayer(js, sigstoreBundle)})
	if err != nil {
		t.Fatal(err)
	}
	pushReferrer(t, d, img)
}

// pushReferrer pushes img with d as its subject: a registry with the
// referrers API lists it there, others under the referrers tag schema
// (go-containerregistry keeps that index when the registry does not
// answer OCI-Subject).
func pushReferrer(t testing.TB, d name.Digest, img v1.Image) {
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
		t.Fatalf("testenv: push a referrer of %s: %v", d, err)
	}
}
