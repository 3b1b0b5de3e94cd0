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

	"berth.dev/berth/internal/failure"
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
	ctx, cancel := e.call(ctx)
	defer cancel()
	ins, err := e.c.ImageInspect(ctx, ref)
	if client.IsErrNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, classify(fmt.Errorf("inspect image %s: %w", ref, err))
	}
	// The same digest under another repository is not enough: a later
	// `docker image prune` or a pull by this name would behave differently.
	return slices.Contains(ins.RepoDigests, ref), nil
}

// pull pulls ref with credentials from the Docker config file (DOCKER_CONFIG
// or ~/.docker/config.json, credential helpers included), logs layer
// progress, gives up when no progress arrives for PullStall, and is bounded
// as a whole by Timeouts.Pull. A registry that does not answer is an
// outage; a digest the registry does not know is a verdict on the revision
// that names it.
func (e *Engine) pull(ctx context.Context, ref string) error {
	auth, err := registryAuth(ref)
	if err != nil {
		return fmt.Errorf("pull %s: credentials: %w", ref, err)
	}
	ctx, cancelTotal := within(ctx, e.Timeouts.Pull)
	defer cancelTotal()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The stall clock runs from the request on: dockerd answers a pull's
	// request only once it reached the registry.
	stall := time.AfterFunc(e.PullStall, func() {
		cancel(failure.AsOutage(fmt.Errorf("no progress for %s", e.PullStall)))
	})
	defer stall.Stop()
	fail := func(err error) error {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return classifyPull(fmt.Errorf("pull %s: %w", ref, err))
	}
	start := time.Now()
	rc, err := e.c.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	stall.Reset(e.PullStall)
	layers := map[string]int64{} // layer id → bytes downloaded
	lastLog := time.Now()
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fail(err)
		}
		stall.Reset(e.PullStall)
		if m.Error != nil {
			return classifyPull(fmt.Errorf("pull %s: %s", ref, m.Error.Message))
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

// classifyPull marks a pull's error. dockerd passes the registry's errors
// on as text (in the stream, or as a 404/500 of the pull request itself):
// "manifest unknown", or a 404, is the registry saying it has no such
// digest or repository, a verdict; network failures reaching it are
// outages (classify).
func classifyPull(err error) error {
	msg := err.Error()
	if failure.Of(err) == failure.Unclassed && !unreachable(err) &&
		(errdefs.IsNotFound(err) || strings.Contains(msg, "manifest unknown") || strings.Contains(msg, "not found: manifest")) {
		return failure.AsVerdict(err)
	}
	return classify(err)
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
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !present {
			continue
		}
		rctx, cancel := within(ctx, e.Timeouts.Remove)
		_, err = e.c.ImageRemove(rctx, ref, image.RemoveOptions{PruneChildren: true})
		cancel()
		switch {
		case err == nil:
			removed = append(removed, ref)
		case client.IsErrNotFound(err) || errdefs.IsConflict(err):
			// Gone already, or in use by a container: keep it.
		default:
			errs = append(errs, classify(fmt.Errorf("remove image %s: %w", ref, err)))
		}
	}
	return removed, errors.Join(errs...)
}
