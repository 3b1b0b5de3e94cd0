package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// Mux sends each reference to its backend: sops: references to SOPS, the
// others to Vault. Either may be nil (the host has no vault, or no age
// key): a reference to it is then a verdict.
type Mux struct {
	Vault Resolver
	SOPS  *SOPS
}

func (m Mux) Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error) {
	vault, sops := map[string]envs.SecretRef{}, map[string]envs.SecretRef{}
	for name, r := range refs {
		if _, ok := r.SOPSFile(); ok {
			sops[name] = r
		} else {
			vault[name] = r
		}
	}
	var env []string
	var vd, sd string
	var errs []error
	if len(vault) > 0 {
		if m.Vault == nil {
			errs = append(errs, failure.AsVerdict(fmt.Errorf("service %s declares Vault secrets (%s) but this host has no vault", service, strings.Join(slices.Sorted(maps.Keys(vault)), ", "))))
		} else if e, d, err := m.Vault.Resolve(ctx, service, vault); err != nil {
			errs = append(errs, err)
		} else {
			env, vd = append(env, e...), d
		}
	}
	if len(sops) > 0 {
		if m.SOPS == nil {
			errs = append(errs, failure.AsVerdict(fmt.Errorf("service %s declares SOPS-encrypted secrets (%s) but this host has no sops.age_key_file", service, strings.Join(slices.Sorted(maps.Keys(sops)), ", "))))
		} else if e, d, err := m.SOPS.Resolve(ctx, service, sops); err != nil {
			errs = append(errs, err)
		} else {
			env, sd = append(env, e...), d
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, "", err
	}
	slices.SortFunc(env, func(a, b string) int {
		na, _, _ := strings.Cut(a, "=")
		nb, _, _ := strings.Cut(b, "=")
		return strings.Compare(na, nb)
	})
	if len(sops) == 0 {
		return env, vd, nil // Vault alone: the digest it always had
	}
	h := sha256.Sum256([]byte(vd + "\x00sops:" + sd))
	return env, hex.EncodeToString(h[:]), nil
}
