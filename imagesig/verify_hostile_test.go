package imagesig

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore-go/pkg/sign"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// An image named with another spelling of a rule's registry — capitals,
// a default port, a trailing dot — is the same image to dockerd, so the
// rule applies; a name go-containerregistry cannot parse (dockerd takes
// MYREG/x as the registry MYREG) is refused while there are rules.
func TestVerify_AnotherSpellingOfTheRegistryIsCheckedToo(t *testing.T) {
	reg := referrersRegistry(t)
	k := testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "shop/web")
	_, port, _ := strings.Cut(reg.host, ":")
	v, _ := newVerifier(t, []Rule{{Prefix: "localhost:" + port + "/shop", Key: k.PubFile}, {Prefix: "myreg", Key: k.PubFile}}, "")
	for _, ref := range []string{"LOCALHOST:" + port + "/shop/web@" + img.DigestStr(), "localhost.:" + port + "/shop/web@" + img.DigestStr()} {
		err := v.Check(context.Background(), ref, nil)
		if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "no signature found") {
			t.Errorf("%s: an unsigned image under a rule, spelt otherwise: %v", ref, err)
		}
	}
	k.SignReferrer(t, img)
	if err := v.Check(context.Background(), "LOCALHOST:"+port+"/shop/web@"+img.DigestStr(), nil); err != nil {
		t.Errorf("a signed image, spelt otherwise: %v", err)
	}
	err := v.Check(context.Background(), "MYREG/shop/web@"+img.DigestStr(), nil)
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "MYREG/shop/web") {
		t.Errorf("an image name the rules cannot be matched against: %v", err)
	}
	free, _ := newVerifier(t, nil, "")
	if err := free.Check(context.Background(), "MYREG/shop/web@"+img.DigestStr(), nil); err != nil {
		t.Errorf("no rules, nothing to refuse: %v", err)
	}
}

// pushReferrer pushes a manifest with one layer of content as a
// referrer of d: what a registry (or whoever can push to it) chooses to
// show berth as a signature.
func pushReferrer(t *testing.T, d name.Digest, mediaType types.MediaType, content []byte) {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), emptyConfig)
	img, err := mutate.Append(base, mutate.Addendum{Layer: static.NewLayer(content, mediaType)})
	if err != nil {
		t.Fatal(err)
	}
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
		t.Fatal(err)
	}
}

// Text a registry writes — a bundle's media type, an error page — reaches
// verdicts and outages, hence the journal, the API, the page and the
// forge, as one printable line.
func TestVerify_RegistryTextIsOnePrintableLine(t *testing.T) {
	const hostile = "\x1b[2J\nforged: line\u202e"
	reg := referrersRegistry(t)
	k := testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "app")
	pushReferrer(t, img, "application/vnd.dev.sigstore.bundle.v0.3+json", []byte(`{"mediaType":"x\u001b[2J\nforged: line\u202e"}`))
	v, _ := newVerifier(t, []Rule{{Prefix: "*", Key: k.PubFile}}, "")
	err := v.Check(context.Background(), img.String(), nil)
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "not a Sigstore bundle") {
		t.Fatalf("want a verdict on the bundle, got %v", err)
	}
	if strings.ContainsAny(err.Error(), "\x1b\n\u202e") {
		t.Errorf("the verdict carries the registry's text raw: %q", err)
	}
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, hostile+strings.Repeat("x", 60000))
	}))
	defer failing.Close()
	err = v.Check(context.Background(), strings.TrimPrefix(failing.URL, "http://")+"/app@"+img.DigestStr(), nil)
	if !failure.IsOutage(err) {
		t.Fatalf("want an outage, got %v", err)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.ContainsAny(line, "\x1b\u202e") || strings.HasPrefix(line, "forged") || len(line) > 1000 {
			t.Errorf("the outage carries the registry's text raw: %q", err)
			break
		}
	}
}

// countingWriter counts what a handler managed to send.
type countingWriter struct {
	w http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// A registry that answers with a huge referrers list (or signature
// manifest) is read no further than a signature could need: the rest
// counts as no signature, never as memory spent.
func TestVerify_AHugeAnswerIsReadNoFurtherThanItsBound(t *testing.T) {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))
	var sent atomic.Int64
	const huge = 64 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		cw := countingWriter{w, &sent}
		io.WriteString(cw, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"pad":"`)
		chunk := strings.Repeat("x", 64<<10)
		for i := 0; i < huge/len(chunk); i++ {
			if _, err := io.WriteString(cw, chunk); err != nil {
				return
			}
		}
		io.WriteString(cw, `"}}`)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	k := testenv.NewCosignKey(t)
	img := pushImage(t, host, "app")
	v, _ := newVerifier(t, []Rule{{Prefix: "*", Key: k.PubFile}}, "")
	err := v.Check(context.Background(), img.String(), nil)
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "more than") {
		t.Errorf("want a verdict saying the answer was too large, got %v", err)
	}
	if n := sent.Load(); n > huge/2 {
		t.Errorf("berth read %d MiB of a %d MiB referrers list", n>>20, huge>>20)
	}
}

// A Sigstore bundle the key made counts only as a signature of the image
// it is attached to: not one whose statement names another digest, nor an
// attestation of another kind (an SBOM, a scan) about this one.
func TestVerify_ABundleOfTheKeyForAnotherDigestOrPredicate(t *testing.T) {
	reg := referrersRegistry(t)
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := kp.GetPublicKeyPem()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "bundle.pub")
	if err := os.WriteFile(keyFile, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	push := func(onto name.Digest, statement []byte) {
		b, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: "application/vnd.in-toto+json"}, kp, sign.BundleOptions{})
		if err != nil {
			t.Fatal(err)
		}
		testenv.PushBundle(t, onto, b)
	}
	target, other := pushImage(t, reg.host, "app/target"), pushImage(t, reg.host, "app/other")
	push(target, testenv.CosignStatement(other))
	sbom := pushImage(t, reg.host, "app/sbom")
	push(sbom, []byte(strings.Replace(string(testenv.CosignStatement(sbom)), testenv.CosignSignPredicate, "https://spdx.dev/Document", 1)))
	v, _ := newVerifier(t, []Rule{{Prefix: "*", Key: keyFile}}, "")
	for img, why := range map[name.Digest]string{target: "a bundle that does not verify", sbom: "not an image signature"} {
		err := v.Check(context.Background(), img.String(), nil)
		if !failure.IsVerdict(err) || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: want a verdict saying %q, got %v", img.Context(), why, err)
		}
	}
}

// A registry listing many referrers that look like signatures gets at
// most maxSignatures of them read, however many signatures each holds.
func TestVerify_ReadsAtMostMaxSignaturesReferrers(t *testing.T) {
	reg := referrersRegistry(t)
	k := testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "app")
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), emptyConfig)
	desc, err := remote.Head(img)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxSignatures + 8 {
		var adds []mutate.Addendum
		for j := range 3 { // three signatures this key did not make
			adds = append(adds, mutate.Addendum{Layer: static.NewLayer([]byte(fmt.Sprintf("payload %d %d", i, j)), simpleSigningType),
				Annotations: map[string]string{signatureAnnotation: "AAAA"}})
		}
		m, err := mutate.Append(base, adds...)
		if err != nil {
			t.Fatal(err)
		}
		m = mutate.Subject(m, *desc).(v1.Image)
		dg, _ := m.Digest()
		if err := remote.Write(img.Context().Digest(dg.String()), m); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := newVerifier(t, []Rule{{Prefix: "*", Key: k.PubFile}}, "")
	reg.reset()
	if err := v.Check(context.Background(), img.String(), nil); !failure.IsVerdict(err) {
		t.Fatalf("want a verdict, got %v", err)
	}
	manifests := 0
	for _, r := range reg.requests() {
		if strings.HasPrefix(r, "GET ") && strings.Contains(r, "/manifests/sha256:") {
			manifests++
		}
	}
	if manifests > maxSignatures {
		t.Errorf("read %d signature manifests, more than %d", manifests, maxSignatures)
	}
}
