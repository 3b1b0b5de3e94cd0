package imagesig

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pushImage pushes a small random image to host/repo and returns its
// pinned reference.
func pushImage(t testing.TB, host, repo string) name.Digest {
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
