package secrets

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/envs"
)

// Resolver is what the deploy pass asks for a service's secrets; *Vault is
// one.
type Resolver interface {
	Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error)
}

// Cached answers from the last resolution of the same service and
// references for Interval, so that the agent's frequent passes do not read
// Vault every time: a new secret version is noticed (and redeployed) at most
// Interval later. With Interval < 0 an answer is kept until the references
// change (a new commit), so new versions never redeploy on their own. A
// dynamic secret whose lease runs out is read again whatever the interval.
type Cached struct {
	Resolver Resolver
	Interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	env    []string
	digest string
	at     time.Time
}

func (c *Cached) Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error) {
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(refs)) {
		fmt.Fprintf(&b, "%s=%s;", name, refs[name])
	}
	key := b.String()
	c.mu.Lock()
	e, ok := c.entries[service+"\x00"+key]
	c.mu.Unlock()
	refresh := false
	if r, isVault := c.Resolver.(interface {
		NeedsRefresh(string, map[string]envs.SecretRef) bool
	}); isVault {
		refresh = r.NeedsRefresh(service, refs) // a lease running out
	}
	if ok && !refresh && (c.Interval < 0 || now().Sub(e.at) < c.Interval) {
		return e.env, e.digest, nil
	}
	env, digest, err := c.Resolver.Resolve(ctx, service, refs)
	if err != nil {
		return nil, "", err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cacheEntry{}
	}
	// By service and references: a service asks once for its variables
	// and once for its files. (Entries of older references stay: a few
	// bytes per change of a service's references.)
	c.entries[service+"\x00"+key] = cacheEntry{env: env, digest: digest, at: now()}
	c.mu.Unlock()
	return env, digest, nil
}
