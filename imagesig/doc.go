// Package imagesig verifies container image signatures before berth pulls
// or runs an image (DESIGN.md §10). It owns the images.verify rules (a
// registry or repository prefix, a signer, enforce or warn), looking up an
// image's signatures in its registry — the OCI 1.1 referrers API (or its
// tag schema), then cosign's sha256-<digest>.sig tag —, checking them
// against the pinned digest, and the cache of verified digests kept in
// the state dir.
//
// Signers are a cosign public key (cosign's simple-signing signatures,
// checked with sigstore's signature package, and Sigstore bundles) or a
// keyless identity (a certificate issuer and subject in a Sigstore bundle,
// checked offline by sigstore-go against a trusted-root file). No crypto
// and no signature format is berth's own.
//
// Classes (internal/failure): an enforce rule that finds no valid
// signature is a verdict naming the image and the rule; a registry that
// does not answer is an outage (whether the image is signed is unknown).
package imagesig
