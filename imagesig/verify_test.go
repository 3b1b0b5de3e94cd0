package imagesig

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/hashicorp/go-hclog"
	"github.com/sigstore/sigstore-go/pkg/sign"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// testRegistry is a registry under test with the requests it served.
type testRegistry struct {
	host     string
	requests func() []string
	reset    func()
}

// referrersRegistry is go-containerregistry's registry with the OCI 1.1
// referrers API on.
func referrersRegistry(t testing.TB) testRegistry {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return testRegistry{
		host: strings.TrimPrefix(srv.URL, "http://"),
		requests: func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), seen...)
		},
		reset: func() { mu.Lock(); seen = nil; mu.Unlock() },
	}
}

// tagRegistry is the CNCF distribution registry, which has no referrers
// API: signatures are found under tags (cosign's, or the referrers tag
// schema).
func tagRegistry(t testing.TB) testRegistry {
	t.Helper()
	reg := testenv.StartRegistry(t)
	return testRegistry{host: reg.Host, requests: reg.Requests, reset: reg.ResetRequests}
}

// logBuffer collects a verifier's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newVerifier(t testing.TB, rules []Rule, cache string) (*Verifier, *logBuffer) {
	t.Helper()
	p, err := Compile(rules, "images.verify", os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCache(cache)
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuffer{}
	return &Verifier{Host: p, Cache: c, Log: hclog.New(&hclog.LoggerOptions{Output: lb, Level: hclog.Info})}, lb
}

func TestVerify_TagSchemeRegistryAndTheCache(t *testing.T) {
	reg := tagRegistry(t)
	k := testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "shop/web")
	k.SignTag(t, img, img)
	cache := filepath.Join(t.TempDir(), CacheFile)
	v, _ := newVerifier(t, []Rule{{Prefix: reg.host + "/shop", Key: k.PubFile}}, cache)
	reg.reset()
	if err := v.Check(context.Background(), img.String(), nil); err != nil {
		t.Fatalf("signed image refused: %v", err)
	}
	got := strings.Join(reg.requests(), "\n")
	if !strings.Contains(got, "/referrers/") || !strings.Contains(got, ".sig") {
		t.Errorf("expected the referrers API tried, then the .sig tag; requests:\n%s", got)
	}
	// Verified: no registry request again, also for an agent that restarts.
	reg.reset()
	v2, _ := newVerifier(t, []Rule{{Prefix: reg.host + "/shop", Key: k.PubFile}}, cache)
	for _, v := range []*Verifier{v, v2} {
		if err := v.Check(context.Background(), img.String(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(reg.requests()); n != 0 {
		t.Errorf("a verified digest made %d registry requests: %v", n, reg.requests())
	}
	// Another signer (the rule's key changed): looked up again.
	k2 := testenv.NewCosignKey(t)
	v3, _ := newVerifier(t, []Rule{{Prefix: reg.host + "/shop", Key: k2.PubFile}}, cache)
	if err := v3.Check(context.Background(), img.String(), nil); !failure.IsVerdict(err) {
		t.Errorf("the cache vouched for another key: %v", err)
	}
}

func TestVerify_ReferrersOnlyRegistry(t *testing.T) {
	reg := referrersRegistry(t)
	k := testenv.NewCosignKey(t)
	kp, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := kp.GetPublicKeyPem()
	if err != nil {
		t.Fatal(err)
	}
	bundleKey := filepath.Join(t.TempDir(), "bundle.pub")
	if err := os.WriteFile(bundleKey, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	simple := pushImage(t, reg.host, "app/simple")
	k.SignReferrer(t, simple)
	bundled := pushImage(t, reg.host, "app/bundled")
	testenv.SignBundle(t, kp, bundled)
	v, _ := newVerifier(t, []Rule{
		{Prefix: reg.host + "/app/simple", Key: k.PubFile},
		{Prefix: reg.host + "/app/bundled", Key: bundleKey},
	}, "")
	for _, img := range []name.Digest{simple, bundled} {
		reg.reset()
		if err := v.Check(context.Background(), img.String(), nil); err != nil {
			t.Fatalf("%s refused: %v", img, err)
		}
		for _, r := range reg.requests() {
			if strings.Contains(r, ".sig") {
				t.Errorf("a signature found among the referrers still looked up the .sig tag: %s", r)
			}
		}
	}
}

func TestVerify_Refusals(t *testing.T) {
	for _, regName := range []string{"referrers", "tags"} {
		t.Run(regName, func(t *testing.T) {
			reg := referrersRegistry(t)
			if regName == "tags" {
				reg = tagRegistry(t)
			}
			good, wrong := testenv.NewCosignKey(t), testenv.NewCosignKey(t)
			unsigned := pushImage(t, reg.host, "unsigned")
			byWrongKey := pushImage(t, reg.host, "wrongkey")
			wrong.SignTag(t, byWrongKey, byWrongKey)
			other := pushImage(t, reg.host, "other")
			good.SignTag(t, other, other)
			// A valid signature of another image, placed under this one's tag.
			borrowed := pushImage(t, reg.host, "other")
			good.SignTag(t, borrowed, other)
			for _, tc := range []struct {
				name string
				img  name.Digest
				why  string
			}{
				{"unsigned", unsigned, "no signature found"},
				{"wrong key", byWrongKey, "a signature this key did not make"},
				{"signature of another digest", borrowed, "a signature for another image (" + other.DigestStr() + ")"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					v, _ := newVerifier(t, []Rule{{Prefix: "*", Key: good.PubFile}}, "")
					err := v.Check(context.Background(), tc.img.String(), nil)
					if !failure.IsVerdict(err) {
						t.Fatalf("want a verdict, got %v", err)
					}
					for _, want := range []string{tc.img.String(), "images.verify[0]", good.PubFile, tc.why} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("verdict %q does not say %q", err, want)
						}
					}
				})
			}
		})
	}
}

func TestVerify_WarnModePullsAndWarnsOnce(t *testing.T) {
	reg := referrersRegistry(t)
	k := testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "unsigned")
	cache := filepath.Join(t.TempDir(), CacheFile)
	v, logs := newVerifier(t, []Rule{{Prefix: reg.host, Key: k.PubFile, Mode: Warn}}, cache)
	for range 2 {
		reg.reset()
		if err := v.Check(context.Background(), img.String(), nil); err != nil {
			t.Fatalf("warn mode refused: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "image signature not verified"); n != 1 {
		t.Errorf("want one warning, got %d:\n%s", n, logs)
	}
	if n := len(reg.requests()); n != 0 {
		t.Errorf("the second check made %d requests", n)
	}
	// The rule turned to enforce (the same signer): what warn remembered
	// vouches for nothing.
	v, _ = newVerifier(t, []Rule{{Prefix: reg.host, Key: k.PubFile}}, cache)
	if err := v.Check(context.Background(), img.String(), nil); !failure.IsVerdict(err) {
		t.Errorf("an enforce rule took the warn rule's remembered failure for a pass: %v", err)
	}
}

func TestVerify_EnvRulesOnlyAdd(t *testing.T) {
	reg := referrersRegistry(t)
	hostKey, repoKey := testenv.NewCosignKey(t), testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "web")
	hostKey.SignTag(t, img, img)
	v, _ := newVerifier(t, []Rule{{Prefix: reg.host, Key: hostKey.PubFile}}, "")
	env, err := Compile([]Rule{{Prefix: reg.host + "/web", Key: repoKey.PubFile}}, "x-berth.images.verify", os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	err = v.Check(context.Background(), img.String(), env)
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "x-berth.images.verify[0]") {
		t.Fatalf("the environment's own rule was not enforced: %v", err)
	}
	// Signed by both: accepted.
	repoKey.SignReferrer(t, img)
	if err := v.Check(context.Background(), img.String(), env); err != nil {
		t.Fatal(err)
	}
}

func TestVerify_UnmatchedAndUnpinned(t *testing.T) {
	reg := referrersRegistry(t)
	k := testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "free/app")
	v, _ := newVerifier(t, []Rule{{Prefix: reg.host + "/signed", Key: k.PubFile}}, "")
	reg.reset()
	if err := v.Check(context.Background(), img.String(), nil); err != nil {
		t.Fatal(err)
	}
	// "signed" matches whole components only.
	if err := v.Check(context.Background(), reg.host+"/signed-not/app@"+img.DigestStr(), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(reg.requests()); n != 0 {
		t.Errorf("images no rule matches made %d requests", n)
	}
	err := v.Check(context.Background(), reg.host+"/signed/app:latest", nil)
	if !failure.IsVerdict(err) || !strings.Contains(err.Error(), "pinned by digest") {
		t.Errorf("a tag under a rule: %v", err)
	}
}

func TestVerify_RegistryDownIsAnOutage(t *testing.T) {
	reg := referrersRegistry(t)
	k := testenv.NewCosignKey(t)
	img := pushImage(t, reg.host, "app")
	srv := httptest.NewServer(http.NotFoundHandler())
	down := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	v, _ := newVerifier(t, []Rule{{Prefix: "*", Key: k.PubFile}}, "")
	err := v.Check(context.Background(), down+"/app@"+img.DigestStr(), nil)
	if !failure.IsOutage(err) {
		t.Fatalf("want an outage, got %v", err)
	}
	// A registry failing (500) is one too.
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer failing.Close()
	err = v.Check(context.Background(), strings.TrimPrefix(failing.URL, "http://")+"/app@"+img.DigestStr(), nil)
	if !failure.IsOutage(err) {
		t.Fatalf("500: want an outage, got %v", err)
	}
}
