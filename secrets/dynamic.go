package secrets

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"berth.dev/berth/envs"
)

// Dynamic secrets: a reference to a path outside a KV mount (for example
// database/creds/journal#password) reads a secret that Vault issues with a
// lease. The values stay in memory and are reused for every resolution of
// the same service and path while the lease is healthy, so the service's
// config hash stays put and nothing redeploys; RenewLeases renews each
// lease at half its duration. When Vault stops extending it (its max_ttl),
// the secret is read again once less than a third of the first granted
// duration remains: new credentials, a new digest, and the services using
// them roll over through the normal cutover while the old credentials are
// still valid. Old leases are not revoked (a rollback may still need them);
// they expire at their TTL.
type dynamic struct {
	data      map[string]any // the secret's fields (values: memory only)
	leaseID   string
	renewable bool
	granted   time.Duration // the duration first granted
	ttl       time.Duration // the current duration
	renewedAt time.Time
	expires   time.Time
}

// fresh says whether the values may still be handed out.
func (d *dynamic) fresh(now time.Time) bool {
	if d.leaseID == "" {
		return false // not leased (e.g. static credentials): read each time
	}
	return d.expires.Sub(now) > d.granted/3
}

func dynKey(service, path string) string { return service + "\x00" + path }

// dynamicData returns service's secret at path: the held one while its
// lease is fresh, else a new read.
func (v *Vault) dynamicData(ctx context.Context, service, path string) (map[string]any, error) {
	key := dynKey(service, path)
	v.mu.Lock()
	d := v.dyn[key]
	now := v.now()
	if d != nil && d.fresh(now) {
		v.mu.Unlock()
		return d.data, nil
	}
	v.mu.Unlock()
	s, err := v.client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, describe(err)
	}
	if s == nil || s.Data == nil {
		return nil, errNoSecret
	}
	ttl := time.Duration(s.LeaseDuration) * time.Second
	nd := &dynamic{data: s.Data, leaseID: s.LeaseID, renewable: s.Renewable, granted: ttl, ttl: ttl, renewedAt: now, expires: now.Add(ttl)}
	v.mu.Lock()
	v.dyn[key] = nd
	v.mu.Unlock()
	if s.LeaseID != "" {
		v.log.Info("dynamic secret issued", "service", service, "path", path, "lease_ttl", ttl, "renewable", s.Renewable)
	}
	return s.Data, nil
}

// NeedsRefresh says whether any of refs is a held dynamic secret whose
// lease is running out: the cache in front must ask again even when it
// would not re-read Vault otherwise.
func (v *Vault) NeedsRefresh(service string, refs map[string]envs.SecretRef) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	for _, r := range refs {
		if d := v.dyn[dynKey(service, r.Path)]; d != nil && d.leaseID != "" && !d.fresh(now) {
			return true
		}
	}
	return false
}

// RenewLeases renews the held leases at half their duration until ctx
// ends. A failed renewal is logged and retried at the next tick; the
// secret is read again before it runs out either way.
func (v *Vault) RenewLeases(ctx context.Context) {
	for {
		wait := v.renewDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// renewDue renews what is due and returns how long until the next is.
func (v *Vault) renewDue(ctx context.Context) time.Duration {
	v.mu.Lock()
	due := map[string]*dynamic{}
	next := time.Minute
	now := v.now()
	for k, d := range v.dyn {
		if d.leaseID == "" || !d.renewable {
			continue
		}
		at := d.renewedAt.Add(d.ttl / 2)
		if !now.Before(at) {
			due[k] = d
		} else {
			next = min(next, at.Sub(now))
		}
	}
	v.mu.Unlock()
	if len(due) > 0 {
		if err := v.authenticate(ctx); err != nil {
			v.log.Warn("lease renewal: vault login", "error", err)
			return 5 * time.Second
		}
	}
	for _, k := range slices.Sorted(maps.Keys(due)) {
		d := due[k]
		service, path, _ := strings.Cut(k, "\x00")
		s, err := v.client.Sys().RenewWithContext(ctx, d.leaseID, 0)
		v.mu.Lock()
		now := v.now()
		if err != nil || s == nil {
			v.log.Warn("lease renewal failed; retrying", "service", service, "path", path, "error", describe(err))
			d.renewedAt = now.Add(-d.ttl/2 + 5*time.Second) // try again in 5 s
		} else {
			d.ttl = time.Duration(s.LeaseDuration) * time.Second
			d.renewedAt, d.expires = now, now.Add(d.ttl)
			if d.ttl < d.granted/2 {
				v.log.Info("lease nearing its max TTL; new credentials are read before it ends", "service", service, "path", path, "ttl", d.ttl)
			}
		}
		next = min(next, max(d.ttl/2, time.Second))
		v.mu.Unlock()
	}
	return max(next, time.Second)
}
