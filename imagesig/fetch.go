package imagesig

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/printable"
)

// Where cosign puts what it writes (cosign v2.6.5: pkg/oci/static,
// internal/pkg/oci/remote, pkg/types; sigstore-go pkg/bundle).
const (
	simpleSigningType   = "application/vnd.dev.cosign.simplesigning.v1+json"
	signatureAnnotation = "dev.cosignproject.cosign/signature"
	// cosign sign --registry-referrers-mode=oci-1-1: the same manifest as
	// the .sig tag's, as a referrer of the image.
	cosignSigArtifact = "application/vnd.dev.cosign.artifact.sig.v1+json"
	// cosign sign --new-bundle-format: a Sigstore bundle as a referrer.
	bundleArtifactPrefix = "application/vnd.dev.sigstore.bundle"
	// The config of an artifact without one (OCI 1.1).
	emptyConfig = "application/vnd.oci.empty.v1+json"
)

// Bounds on what a registry may hand berth while it looks for signatures:
// a signature manifest and its payload are a few KB.
const (
	maxSignatures = 32      // signature manifests looked at per image and source
	maxLayers     = 16      // signatures per manifest
	maxBlob       = 1 << 20 // a payload or a bundle
	maxReason     = 300     // bytes of one reason a verdict or an outage quotes
)

// candidate is one signature found for an image.
type candidate struct {
	where   string // "referrer sha256:…", "tag sha256-….sig"
	payload []byte // cosign simple signing: the signed payload
	sig     []byte // the signature over it
	bundle  []byte // or a Sigstore bundle (JSON)
	err     error  // why it could not be read: it counts as no signature
}

// fetcher reads an image's signatures from its registry.
type fetcher struct {
	digest name.Digest
	opts   []remote.Option
}

// referrers lists the image's referrers (the OCI 1.1 API, or the
// referrers tag schema where the registry lacks it) and reads those that
// are cosign signatures or Sigstore bundles.
func (f *fetcher) referrers(ctx context.Context) ([]candidate, error) {
	idx, err := remote.Referrers(f.digest, f.opts...)
	if err != nil {
		if notFound(err) {
			return nil, nil
		}
		if cs, err := tooLarge("referrers", err); err == nil {
			return cs, nil
		}
		return nil, registryError("list the referrers of", f.digest, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return []candidate{{where: "referrers", err: fmt.Errorf("not an image index: %w", err)}}, nil
	}
	var out []candidate
	read := 0
	for _, d := range im.Manifests {
		if read == maxSignatures {
			break
		}
		if !maySign(d.ArtifactType) {
			continue
		}
		read++
		cs, err := f.manifest(ctx, f.digest.Context().Digest(d.Digest.String()), "referrer "+d.Digest.String())
		if err != nil {
			return out, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

// sigTag reads cosign's sha256-<hex>.sig tag.
func (f *fetcher) sigTag(ctx context.Context) ([]candidate, error) {
	tag := f.digest.Context().Tag(strings.Replace(f.digest.DigestStr(), ":", "-", 1) + ".sig")
	cs, err := f.manifest(ctx, tag, "tag "+tag.TagStr())
	if notFound(err) {
		return nil, nil
	}
	return cs, err
}

// manifest reads one signature manifest and the signatures in it. Only
// the registry failing to answer is an error; a manifest that is not what
// cosign writes yields a candidate with its reason.
func (f *fetcher) manifest(ctx context.Context, ref name.Reference, where string) ([]candidate, error) {
	desc, err := remote.Get(ref, append(f.opts, remote.WithContext(ctx))...)
	if err != nil {
		if notFound(err) {
			return nil, err
		}
		if cs, err := tooLarge(where, err); err == nil {
			return cs, nil
		}
		return nil, registryError("read the signature manifest", ref, err)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(desc.Manifest)))
	if err != nil {
		return []candidate{{where: where, err: fmt.Errorf("not an image manifest: %w", err)}}, nil
	}
	var out []candidate
	for i, l := range m.Layers {
		if i == maxLayers {
			break
		}
		c := candidate{where: where}
		switch {
		case string(l.MediaType) == simpleSigningType:
			sig, err := base64.StdEncoding.DecodeString(l.Annotations[signatureAnnotation])
			if err != nil || len(sig) == 0 {
				c.err = errors.New("a simple-signing layer without a signature annotation")
				break
			}
			c.sig = sig
			c.payload, c.err = f.blob(ctx, ref, l)
		case strings.HasPrefix(string(l.MediaType), bundleArtifactPrefix):
			c.bundle, c.err = f.blob(ctx, ref, l)
		default:
			continue
		}
		if c.err != nil && failure.IsOutage(c.err) {
			return out, c.err
		}
		out = append(out, c)
	}
	return out, nil
}

// blob reads a layer's content, at most maxBlob bytes, checked against
// its digest.
func (f *fetcher) blob(ctx context.Context, ref name.Reference, l v1.Descriptor) ([]byte, error) {
	if l.Size > maxBlob {
		return nil, fmt.Errorf("a signature layer of %d bytes, more than %d", l.Size, maxBlob)
	}
	fail := func(err error) error {
		if notFound(err) {
			return fmt.Errorf("a signature layer the registry does not have: %w", err)
		}
		return registryError("read a signature layer of", ref, err)
	}
	layer, err := remote.Layer(ref.Context().Digest(l.Digest.String()), append(f.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, fail(err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fail(err)
	}
	defer rc.Close()
	// Read to the end: ggcr checks size and digest at EOF. All the bytes
	// arrived and still an error: they are not the layer's.
	b, err := io.ReadAll(io.LimitReader(rc, maxBlob+1))
	if err != nil && int64(len(b)) == l.Size {
		return nil, fmt.Errorf("a signature layer that does not match its digest: %w", err)
	}
	if err != nil {
		return nil, fail(err)
	}
	if len(b) > maxBlob {
		return nil, fmt.Errorf("a signature layer of more than %d bytes", maxBlob)
	}
	return b, nil
}

// maySign reports whether a referrer of this artifact type may hold a
// signature. A registry that lists a manifest's config media type in
// place of its artifactType (go-containerregistry's own registry does)
// shows cosign's bundles as the empty config: those are read too, and
// only layers of a signature's media type count.
func maySign(artifactType string) bool {
	switch {
	case artifactType == cosignSigArtifact, strings.HasPrefix(artifactType, bundleArtifactPrefix):
		return true
	case artifactType == "", artifactType == emptyConfig:
		return true
	}
	return false
}

func notFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// registryError marks a registry's failure to answer an outage: berth
// cannot tell whether the image is signed, so it waits. That covers
// refused credentials (the host's, not the revision's), throttling and
// server errors as well as the network.
func registryError(what string, ref fmt.Stringer, err error) error {
	return failure.AsOutage(fmt.Errorf("%s %s: %w", what, ref, cutError{err}))
}

// cutError shows an error that quotes a registry's answer (an error
// page, up to 64 KiB of it) as one printable line of at most maxReason
// bytes.
type cutError struct{ err error }

func (e cutError) Error() string { return printable.Cut(e.err.Error(), maxReason) }
func (e cutError) Unwrap() error { return e.err }
