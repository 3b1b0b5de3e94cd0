package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// EnsureImage makes ref ("repo@sha256:…") present, pulling it only when the
// engine does not already hold that digest for that repository: a redeploy
// of present images makes no registry request at all. It reports whether it
// pulled.
func (e *Engine) EnsureImage(ctx context.Context, ref string) (bool, error) {
	present, err := e.hasImage(ctx, ref)
	if err != nil {
		return false, err
	}
	if present {
		return false, nil
	}
	return true, e.pull(ctx, ref)
}

func (e *Engine) hasImage(ctx context.Context, ref string) (bool, error) {
	ins, err := e.c.ImageInspect(ctx, ref)
	if client.IsErrNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	// The same digest under another repository is not enough: a later
	// `docker image prune` or a pull by this name would behave differently.
	return slices.Contains(ins.RepoDigests, ref), nil
}

// pull pulls ref with credentials from the Docker config file (DOCKER_CONFIG
// or ~/.docker/config.json, credential helpers included), logs layer
// progress, and gives up when no progress arrives for PullStall.
func (e *Engine) pull(ctx context.Context, ref string) error {
	auth, err := registryAuth(ref)
	if err != nil {
		return fmt.Errorf("pull %s: credentials: %w", ref, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	rc, err := e.c.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()

	stall := time.AfterFunc(e.PullStall, func() {
		cancel(fmt.Errorf("no progress for %s", e.PullStall))
	})
	defer stall.Stop()
	layers := map[string]int64{} // layer id → bytes downloaded
	lastLog := time.Now()
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return fmt.Errorf("pull %s: %w", ref, cause)
			}
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		stall.Reset(e.PullStall)
		if m.Error != nil {
			return fmt.Errorf("pull %s: %s", ref, m.Error.Message)
		}
		if m.Progress != nil && m.ID != "" && strings.HasPrefix(m.Status, "Downloading") {
			layers[m.ID] = m.Progress.Current
		}
		if time.Since(lastLog) > 2*time.Second {
			e.log.Debug("pull progress", "image", ref, "bytes", sum(layers), "layers", len(layers))
			lastLog = time.Now()
		}
	}
	e.log.Info("image pulled", "image", ref, "bytes", sum(layers), "layers", len(layers), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// registryAuth encodes the credentials the Docker config file holds for
// ref's registry as the X-Registry-Auth value; "" for anonymous.
func registryAuth(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	a, err := authn.DefaultKeychain.Resolve(r.Context().Registry)
	if err != nil {
		return "", err
	}
	if a == authn.Anonymous {
		return "", nil
	}
	c, err := a.Authorization()
	if err != nil {
		return "", err
	}
	return registry.EncodeAuthConfig(registry.AuthConfig{
		Username:      c.Username,
		Password:      c.Password,
		IdentityToken: c.IdentityToken,
		RegistryToken: c.RegistryToken,
		ServerAddress: r.Context().RegistryStr(),
	})
}

// PruneImages removes each candidate image that is not in keep. An image a
// container still uses, or one already gone, is left alone without error.
func (e *Engine) PruneImages(ctx context.Context, keep, candidates []string) ([]string, error) {
	var removed []string
	var errs []error
	seen := map[string]bool{}
	for _, ref := range candidates {
		if seen[ref] || slices.Contains(keep, ref) {
			continue
		}
		seen[ref] = true
		present, err := e.hasImage(ctx, ref)
		if err != nil || !present {
			continue
		}
		_, err = e.c.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true})
		switch {
		case err == nil:
			removed = append(removed, ref)
		case client.IsErrNotFound(err) || errdefs.IsConflict(err):
			// Gone already, or in use by a container: keep it.
		default:
			errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
		}
	}
	return removed, errors.Join(errs...)
}
