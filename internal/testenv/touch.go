package testenv

import (
	"archive/tar"
	"bytes"
	"path"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// TouchInContainers creates the empty file at the absolute path name in
// each container: the trigger of the test app's APP_FAIL_WHEN and
// APP_UNHEALTHY_WHEN, so a test turns a release bad at the moment it
// chooses (FROM scratch images have no shell to exec).
func TouchInContainers(t testing.TB, c *client.Client, name string, ids ...string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: path.Base(name), Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Close()
	for _, id := range ids {
		if err := c.CopyToContainer(t.Context(), id, path.Dir(name), bytes.NewReader(b.Bytes()), container.CopyToContainerOptions{}); err != nil {
			t.Fatalf("testenv: create %s in container %.12s: %v", name, id, err)
		}
	}
}
