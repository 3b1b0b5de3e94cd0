package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"berth.dev/berth/internal/testenv"
)

func pinned(t *testing.T, img testenv.AppImage) name.Digest {
	t.Helper()
	d, err := name.NewDigest(img.Ref())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The host requires the release key's signature: a signed release
// deploys, a redeploy of its present, verified digest asks the registry
// nothing, and a release signed by another key is refused as a verdict
// naming the image and the rule, the signed one still serving.
func TestE2E_SignedImagesOnly(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	release, other := testenv.NewCosignKey(t), testenv.NewCosignKey(t)
	cfg, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, fmt.Sprintf("images:\n  verify:\n    - {prefix: %s/berth, key: %s}\n", w.reg.Host, release.PubFile)...)
	if err := os.WriteFile(w.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(v1.Ref())
	release.SignTag(t, pinned(t, v1), pinned(t, v1))
	w.commit("v1, signed", v1, "serve")
	if code, out := w.once(); code != 0 {
		t.Fatalf("signed v1: exit %d\n%s", code, out)
	}
	if got := w.serving(); got != "version=v1" {
		t.Fatalf("serving %q", got)
	}

	// The same digest again (the web service changes): verified and
	// present, so no registry request at all.
	w.reg.ResetRequests()
	w.commit("v1, web reconfigured", v1, "")
	if code, out := w.once(); code != 0 {
		t.Fatalf("v1 again: exit %d\n%s", code, out)
	}
	if reqs := w.reg.Requests(); len(reqs) != 0 {
		t.Errorf("a redeploy of a verified, present digest made %d registry requests: %v", len(reqs), reqs)
	}

	// A release signed by a key the host does not trust: refused.
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	w.d.CleanupImage(v2.Ref())
	other.SignTag(t, pinned(t, v2), pinned(t, v2))
	bad := w.commit("v2, signed by someone else", v2, "serve")
	if code, out := w.once(); code != 1 {
		t.Fatalf("v2 signed by another key: exit %d, want 1 (a verdict)\n%s", code, out)
	}
	if got := w.serving(); got != "version=v1" {
		t.Fatalf("after the refusal serving %q", got)
	}
	var history []struct{ Commit, Result, Reason string }
	w.cli(&history, "history")
	if len(history) == 0 || history[0].Commit != bad || history[0].Result != "failed" {
		t.Fatalf("history %+v", history)
	}
	for _, want := range []string{v2.Ref(), "images.verify[0]", release.PubFile, "a signature this key did not make"} {
		if !strings.Contains(history[0].Reason, want) {
			t.Errorf("the verdict %q does not say %q", history[0].Reason, want)
		}
	}
	for _, c := range w.containers() {
		if strings.Contains(c, bad[:12]) {
			t.Errorf("a container of the refused revision: %s", c)
		}
	}
}
