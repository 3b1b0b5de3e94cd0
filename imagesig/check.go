package imagesig

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"berth.dev/berth/internal/printable"
)

// cosignSignPredicate is the in-toto predicate type of an image signature
// in a Sigstore bundle (cosign v2.6.5 pkg/types CosignSignPredicateType);
// an attestation of anything else (an SBOM, provenance) is not one.
const cosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"

var digestRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// verify reports why c is not a signature of digest by r's signer, or
// nil when it is.
func (r *rule) verify(c candidate, digest v1.Hash) error {
	switch {
	case c.err != nil:
		return c.err
	case c.bundle != nil:
		return r.verifyBundle(c.bundle, digest)
	}
	return r.verifySimple(c.payload, c.sig, digest)
}

// verifySimple checks a cosign simple-signing signature: the key signed
// the payload, and the payload names this digest. The identity
// (docker-reference) is not compared, as cosign verify does not: an image
// copied to another repository keeps its signature.
func (r *rule) verifySimple(p, sig []byte, digest v1.Hash) error {
	if r.key == nil {
		return errors.New("a signature without a Sigstore bundle: keyless rules verify bundles (cosign sign --new-bundle-format)")
	}
	if err := r.key.VerifySignature(bytes.NewReader(sig), bytes.NewReader(p)); err != nil {
		return errors.New("a signature this key did not make")
	}
	var sci payload.SimpleContainerImage
	if err := json.Unmarshal(p, &sci); err != nil {
		return fmt.Errorf("a signed payload that is not cosign's: %w", err)
	}
	if sci.Critical.Type != payload.CosignSignatureType {
		return fmt.Errorf("a signed payload of type %q, not a cosign image signature", shown(sci.Critical.Type))
	}
	if got := sci.Critical.Image.DockerManifestDigest; got != digest.String() {
		return fmt.Errorf("a signature for another image (%s)", shown(got))
	}
	return nil
}

// verifyBundle checks a Sigstore bundle with sigstore-go, offline: the
// signer (the key, or a certificate chaining to the trusted root with the
// rule's identity, timestamped while it was valid and logged where the
// trusted root lists logs), and an in-toto statement signing this digest
// as an image signature.
func (r *rule) verifyBundle(js []byte, digest v1.Hash) error {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(js); err != nil {
		return fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	var opts []verify.VerifierOption
	var signer verify.PolicyOption
	if r.key != nil {
		// A key is trusted at any time; cosign --tlog-upload=false
		// writes no timestamp.
		opts = append(opts, verify.WithNoObserverTimestamps())
		signer = verify.WithKey()
	} else {
		opts = append(opts, verify.WithObserverTimestamps(1))
		if len(r.trusted.RekorLogs()) > 0 {
			opts = append(opts, verify.WithTransparencyLog(1))
		}
		if len(r.trusted.CTLogs()) > 0 {
			opts = append(opts, verify.WithSignedCertificateTimestamps(1))
		}
		signer = verify.WithCertificateIdentity(*r.identity)
	}
	v, err := verify.NewVerifier(r.trusted, opts...)
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	want, err := hex.DecodeString(digest.Hex)
	if err != nil {
		return err
	}
	res, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest(digest.Algorithm, want), signer))
	if err != nil {
		return fmt.Errorf("a bundle that does not verify: %s", shown(err.Error()))
	}
	if res.Statement == nil || res.Statement.PredicateType != cosignSignPredicate {
		return errors.New("a bundle that is not an image signature (its predicate type is not " + cosignSignPredicate + ")")
	}
	return nil
}

// shown cuts a string that came from a registry to something a log
// line and a verdict can carry; a digest stays whole.
func shown(s string) string {
	if digestRe.MatchString(s) {
		return s
	}
	return printable.Cut(s, 100)
}
