package testenv

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// AppRepo is the repository test images are pushed to by default.
const AppRepo = "berth/testapp"

// AppImage is a test image pushed to a Registry.
type AppImage struct {
	Repo    string // "127.0.0.1:PORT/berth/testapp"
	Tag     string
	Digest  string // "sha256:…"
	Version string // APP_VERSION baked into the image
}

// Ref is the pinned reference, "repo@sha256:…", as a config repo writes it.
func (i AppImage) Ref() string { return i.Repo + "@" + i.Digest }

// ImageSpec describes a test image. Images differing in any field have
// different digests; the same spec always gives the same digest.
type ImageSpec struct {
	Version string   // APP_VERSION; also the tag
	Repo    string   // default AppRepo
	Env     []string // extra environment baked into the image, e.g. "APP_MODE=crash"
	// NoHealthcheck leaves out the image's HEALTHCHECK.
	NoHealthcheck bool
	// HealthInterval and HealthTimeout pace its HEALTHCHECK; zero: the
	// tests' healthInterval and a generous 15 s.
	HealthInterval, HealthTimeout time.Duration
}

// AppImages are the two standard versions a deploy test moves between.
type AppImages struct{ V1, V2 AppImage }

// Images pushes the standard v1 and v2 test images to reg.
func Images(t testing.TB, reg *Registry) AppImages {
	t.Helper()
	return AppImages{
		V1: PushApp(t, reg, ImageSpec{Version: "v1"}),
		V2: PushApp(t, reg, ImageSpec{Version: "v2"}),
	}
}

// PushApp builds an image FROM scratch holding the testapp binary (see
// internal/testenv/testapp) and pushes it to reg under spec.Version's tag.
func PushApp(t testing.TB, reg *Registry, spec ImageSpec) AppImage {
	t.Helper()
	if spec.Repo == "" {
		spec.Repo = AppRepo
	}
	img, err := buildApp(t, spec)
	if err != nil {
		t.Fatalf("testenv: build test image %s: %v", spec.Version, err)
	}
	repo := reg.Host + "/" + spec.Repo
	ref, err := name.NewTag(repo+":"+spec.Version, name.Insecure)
	if err != nil {
		t.Fatalf("testenv: image ref: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := PushImage(ctx, ref, img)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return AppImage{Repo: repo, Tag: spec.Version, Digest: d, Version: spec.Version}
}

// PushImage writes img to ref in its (plain HTTP) registry and returns
// its digest: no Docker engine involved.
func PushImage(ctx context.Context, ref name.Reference, img v1.Image) (string, error) {
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("image digest: %w", err)
	}
	return d.String(), nil
}

// epoch is the timestamp of every file and config in a test image, so that
// digests are reproducible.
var epoch = time.Unix(0, 0).UTC()

func buildApp(t testing.TB, spec ImageSpec) (v1.Image, error) {
	bin, err := TestAppBinary(t)
	if err != nil {
		return nil, err
	}
	return BuildImage(bin, spec)
}

// BuildImage builds an image FROM scratch holding the program at bin as
// /app, its entrypoint, configured by spec; the same bin and spec always
// give the same digest.
func BuildImage(bin string, spec ImageSpec) (v1.Image, error) {
	layerTar, err := appLayer(bin)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	cfg := &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config: v1.Config{
			Entrypoint:   []string{"/app"},
			Env:          append([]string{"APP_VERSION=" + spec.Version}, spec.Env...),
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Labels:       map[string]string{"org.opencontainers.image.version": spec.Version},
		},
	}
	if !spec.NoHealthcheck {
		// Exec form: a scratch image has no shell for CMD-SHELL. A check
		// answers in milliseconds, but on a busy machine dockerd's exec of
		// it can take seconds: the timeout is the test's setup, not what
		// a test checks, so it is generous.
		cfg.Config.Healthcheck = &v1.HealthConfig{
			Test:     []string{"CMD", "/app", "health"},
			Interval: cmp.Or(spec.HealthInterval, healthInterval),
			Timeout:  cmp.Or(spec.HealthTimeout, 15*time.Second),
			Retries:  3,
		}
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "berth testenv"},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	return img, nil
}

// healthInterval paces a test container's HEALTHCHECK. Each check costs
// dockerd, containerd and runc an exec: measured here (Docker 20.10, 2
// cores), 20 idle test containers took 1.2 cores checked every second,
// 0.76 every 2 s, 0.05 with no check at all, and the suite keeps 25–45
// alive at once: at 2 s their checks took about half the machine. Every
// 4 s, the warm suite's mean load fell from 30 to 19 and it took 651 s
// instead of 733, though each container takes two seconds longer to be
// healthy. (Docker 25's StartInterval would give both; Debian 12's
// engine predates it.)
const healthInterval = 4 * time.Second

// HealthTimeout is how long a test gives a healthy container to pass
// berth's health gate. Alone a test container is healthy in a few
// seconds, but with the suite and other work on 2 cores a check's exec
// has taken over 15 s: a deadline of 20–30 s failed healthy releases. A
// test that wants a verdict uses a container that exits, which is one at
// once, or sets a short deadline for a revision that is healthy in no
// part of it.
const HealthTimeout = 2 * time.Minute

// appLayer is a tar holding the binary as /app.
func appLayer(bin string) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "app", Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var (
	testAppOnce sync.Once
	testAppPath string
	testAppErr  error
)

// TestAppBinary returns the static testapp binary: BERTH_TESTAPP_BIN when
// set (scripts/test builds it once), else built with the go command, once
// per test process.
func TestAppBinary(t testing.TB) (string, error) {
	if p := os.Getenv("BERTH_TESTAPP_BIN"); p != "" {
		return p, nil
	}
	testAppOnce.Do(func() {
		dir, err := os.MkdirTemp("", "berth-testapp-")
		if err != nil {
			testAppErr = err
			return
		}
		testAppPath = filepath.Join(dir, "app")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", testAppPath, "berth.dev/berth/internal/testenv/testapp")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			testAppErr = fmt.Errorf("go build testapp: %v\n%s", err, out)
		}
	})
	return testAppPath, testAppErr
}
