package secrets

import (
	"context"
	"testing"
	"time"

	"berth.dev/berth/envs"
)

type countingResolver struct {
	calls  int
	digest string
}

func (r *countingResolver) Resolve(context.Context, string, map[string]envs.SecretRef) ([]string, string, error) {
	r.calls++
	return []string{"A=x"}, r.digest, nil
}

func TestCached_ReadsVaultOncePerInterval(t *testing.T) {
	now := time.Unix(0, 0)
	r := &countingResolver{digest: "d1"}
	c := &Cached{Resolver: r, Interval: 5 * time.Minute, now: func() time.Time { return now }}
	refs := map[string]envs.SecretRef{"A": {Path: "kv/a", Field: "x"}}
	for range 3 {
		c.Resolve(t.Context(), "web", refs)
	}
	if r.calls != 1 {
		t.Fatalf("%d reads within the interval, want 1", r.calls)
	}
	r.digest = "d2"
	now = now.Add(6 * time.Minute)
	if _, d, _ := c.Resolve(t.Context(), "web", refs); d != "d2" || r.calls != 2 {
		t.Fatalf("after the interval: digest %s, %d reads", d, r.calls)
	}
	refs["B"] = envs.SecretRef{Path: "kv/b", Field: "y"}
	if c.Resolve(t.Context(), "web", refs); r.calls != 3 {
		t.Fatalf("changed references were answered from the cache")
	}
	// A service's variables and files are two sets of references, each
	// cached on its own.
	files := map[string]envs.SecretRef{"f": {Path: "kv/a", Field: "x"}}
	c.Resolve(t.Context(), "web", files)
	c.Resolve(t.Context(), "web", refs)
	c.Resolve(t.Context(), "web", files)
	if r.calls != 4 {
		t.Fatalf("variables and files evict each other: %d reads", r.calls)
	}
	r.calls = 3
	never := &Cached{Resolver: r, Interval: -1, now: func() time.Time { return now }}
	never.Resolve(t.Context(), "web", refs)
	now = now.Add(24 * time.Hour)
	never.Resolve(t.Context(), "web", refs)
	if r.calls != 4 {
		t.Fatalf("redeploy_on_change off still re-read Vault: %d reads", r.calls)
	}
}
